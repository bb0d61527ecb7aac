"""Assistant-style responses for the load test: what a voice agent's LLM typically says in one turn.

A response is 1 to 3 sentences and 15 to 60 words, drawn with the caller's seeded ``random.Random``
so a run can be repeated exactly.
"""

from __future__ import annotations

import random

SENTENCES: tuple[str, ...] = (
    "Sure, I can help with that.",
    "Let me check that for you.",
    "Your appointment is confirmed for Tuesday at three thirty in the afternoon.",
    "I found three flights that leave tomorrow morning, and the cheapest one departs at seven fifteen.",
    "The weather in Lisbon will be sunny today, with a high of twenty four degrees and a light breeze.",
    "Of course, I have moved your meeting with the design team to Thursday at ten.",
    "It looks like your package left the warehouse this morning and should arrive by Friday.",
    "To reset your password, open the settings page, choose security, and follow the link we email you.",
    "I'm sorry, but that restaurant is fully booked tonight.",
    "Would you like me to look for a table somewhere nearby instead?",
    "Your current balance is one thousand two hundred and forty dollars.",
    "The last payment of eighty five dollars was received on the twelfth of this month.",
    "Here is a quick summary of your day.",
    "You have two meetings this morning, a lunch with Sarah at noon, and a dentist appointment at four.",
    "Great question!",
    "In short, a heat pump moves heat instead of making it, which is why it uses much less electricity.",
    "Most people find that the first week is the hardest, so try to keep the routine simple.",
    "I've added milk, eggs, and a loaf of sourdough bread to your shopping list.",
    "Is there anything else you would like me to add?",
    "The train to Manchester is running about ten minutes late because of signal problems near Crewe.",
    "Please hold on for a moment while I transfer you to a specialist.",
    "Your order number is four seven two nine, and it is ready for pickup at the front desk.",
    "I didn't quite catch that.",
    "Could you tell me the date of birth on the account, please?",
    "Thanks, that matches our records.",
    "I can offer you a refund to your original payment method or store credit with a ten percent bonus.",
    "The museum opens at nine in the morning and closes at six, except on Mondays when it is closed.",
    "A good rule of thumb is to drink a glass of water with every meal and one between meals.",
    "Sure thing, I've set a timer for twenty minutes.",
    "Your flight to Denver is on time and boards from gate B twelve at five forty.",
    "Traffic on the highway is heavy right now, so the side roads will save you about fifteen minutes.",
    "The recipe needs two cups of flour, one cup of sugar, three eggs, and a pinch of salt.",
    "Preheat the oven to one hundred and eighty degrees before you start mixing.",
    "That plan includes unlimited calls and texts, plus twenty gigabytes of data each month.",
    "If you switch today, the first month is free.",
    "I have sent the invoice to the email address we have on file.",
    "Let me know if you don't see it within a few minutes.",
    "Absolutely, happy to explain.",
    "The main difference is that a savings account pays interest, while a checking account is for everyday spending.",
    "Your prescription is ready, and the pharmacy is open until nine tonight.",
    "Good morning!",
    "It's a busy day, so let's start with the most urgent item on your list.",
    "The project deadline has moved to the end of next week, which gives the team a few extra days.",
    "I would recommend the window seat, since the flight passes over the Alps just after sunrise.",
    "Okay, I've cancelled the subscription, and you won't be charged again.",
)

MIN_WORDS = 15
MAX_WORDS = 60
_MAX_DRAWS = 200


def word_count(text: str) -> int:
    return len(text.split())


def make_response(rng: random.Random) -> str:
    """One response of 1 to 3 sentences totalling ``MIN_WORDS``..``MAX_WORDS`` words.

    Draws until the length fits (bounded); the fallback of the first fitting pair keeps the function
    total even for an unlucky generator.
    """
    for _ in range(_MAX_DRAWS):
        count = rng.randint(1, 3)
        chosen = rng.sample(SENTENCES, count)
        text = " ".join(chosen)
        if MIN_WORDS <= word_count(text) <= MAX_WORDS:
            return text
    return " ".join(SENTENCES[2:4])
