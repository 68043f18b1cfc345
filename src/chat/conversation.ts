// A multi-turn conversation about fixed images, in the form the engine takes: the images go
// with the first question, each answer follows as an assistant message, and every turn sends
// the whole conversation again (the engine keeps no state between generations).

import type { Message } from '../engine.js';

export class Conversation {
  readonly #messages: Message[] = [];
  readonly #imageCount: number;

  constructor(imageCount: number, system?: string) {
    this.#imageCount = imageCount;
    if (system !== undefined) this.#messages.push({ role: 'system', content: [{ type: 'text', text: system }] });
  }

  /** What to send for `question`: the conversation so far, then the question. */
  withQuestion(question: string): Message[] {
    return [...this.#messages, this.#userMessage(question)];
  }

  /** Records an answered turn, so the next question sees it. */
  answered(question: string, answer: string): void {
    this.#messages.push(this.#userMessage(question), { role: 'assistant', content: [{ type: 'text', text: answer }] });
  }

  #userMessage(question: string): Message {
    const first = !this.#messages.some((message) => message.role === 'user');
    const images = first ? Array.from({ length: this.#imageCount }, () => ({ type: 'image' as const })) : [];
    return { role: 'user', content: [...images, { type: 'text', text: question }] };
  }
}
