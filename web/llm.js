// A stand-in for a language model's output stream: a paragraph cut into sub-word tokens that
// arrive with a model's irregular rhythm, so the page can show speech starting before the
// "answer" is complete (each token goes to the server as its own `text` message).

const ANSWERS = [
  "Sure! The quickest way to get to the old harbour is to follow the river path north for about " +
  "ten minutes. When you reach the stone bridge, cross it and turn left at the bakery. You will " +
  "see the lighthouse straight ahead, and the harbour opens up right behind it. If it rains, the " +
  "number twelve bus stops at the bridge every quarter of an hour.",
  "Great question. Sourdough rises because wild yeast and bacteria in the starter eat the sugars " +
  "in the flour and release carbon dioxide. The gas is trapped by the gluten network, so the dough " +
  "slowly puffs up. A warm kitchen speeds things up, while a cold fridge slows them down and gives " +
  "the bread a tangier flavour.",
];

/** Cut text into tokens the way a BPE tokenizer roughly does: leading space + word pieces. */
export function tokenize(text) {
  const tokens = [];
  for (const match of text.matchAll(/\s*[^\s]+/g)) {
    const word = match[0];
    if (word.trim().length <= 6) { tokens.push(word); continue; }
    for (let i = 0; i < word.length; i += 4) tokens.push(word.slice(i, i + 4));
  }
  return tokens;
}

let next = 0;

/**
 * Stream one answer: `onToken(token)` for each token, resolving when done or when `signal`
 * aborts. Tokens come every 20-70 ms (about 25 tokens a second, like a fast hosted model).
 */
export async function simulateLlm(onToken, signal) {
  const answer = ANSWERS[next++ % ANSWERS.length];
  for (const token of tokenize(answer)) {
    if (signal.aborted) return false;
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 50));
    if (signal.aborted) return false;
    onToken(token);
  }
  return true;
}
