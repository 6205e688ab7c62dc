import { ParticipantKind, Room, RoomEvent, type RemoteParticipant } from '@livekit/rtc-node';
import { createJoinToken, type JoinTokenOptions } from './token.js';

export interface ChatLine {
  from: 'user' | 'agent';
  text: string;
  at: Date;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A real LiveKit participant (rtc-node) that chats with the agent over text: it sends on
 * `lk.chat` and reads the agent's replies from `lk.transcription` streams. A turn is over when the
 * agent is back to `listening` with no reply stream open.
 */
const QUIET_AFTER_SPEAKING_MS = 2_000;
const isAgent = (p: RemoteParticipant | undefined) => p?.kind === ParticipantKind.AGENT;

export class ChatParticipant {
  readonly transcript: ChatLine[] = [];
  readonly room = new Room();
  #agentState = '';
  #openStreams = 0;
  /** When the last text stream from the agent ended. */
  #lastStreamEndedAt = 0;
  #statesSeen: string[] = [];
  #errors: Error[] = [];

  private constructor(readonly identity: string) {}

  static async join(url: string, options: JoinTokenOptions): Promise<ChatParticipant> {
    const participant = new ChatParticipant(options.identity);
    await participant.#connect(url, await createJoinToken(options));
    return participant;
  }

  async #connect(url: string, token: string): Promise<void> {
    this.room.registerTextStreamHandler('lk.transcription', (reader, { identity }) => {
      if (!isAgent(this.room.remoteParticipants.get(identity))) return;
      this.#openStreams += 1;
      reader.readAll().then(
        (text) => {
          if (text.trim()) this.transcript.push({ from: 'agent', text, at: new Date() });
          this.#openStreams -= 1;
          this.#lastStreamEndedAt = Date.now();
        },
        (error: Error) => {
          this.#errors.push(error);
          this.#openStreams -= 1;
          this.#lastStreamEndedAt = Date.now();
        },
      );
    });
    this.room.on(RoomEvent.ParticipantAttributesChanged, (_changed, p) => this.#track(p as RemoteParticipant));
    this.room.on(RoomEvent.ParticipantConnected, (p) => this.#track(p));
    await this.room.connect(url, token, { autoSubscribe: false, dynacast: false });
    this.#refresh();
  }

  #track(p: RemoteParticipant): void {
    if (!isAgent(p)) return;
    const state = p.attributes['lk.agent.state'];
    if (state && state !== this.#agentState) {
      this.#agentState = state;
      this.#statesSeen.push(state);
    }
  }

  /** The agent's state as the room has it now, in case an attributes event was missed. */
  #refresh(): void {
    for (const p of this.room.remoteParticipants.values()) this.#track(p);
  }

  get agentReplies(): string[] {
    return this.transcript.filter((l) => l.from === 'agent').map((l) => l.text);
  }

  async #until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (this.#errors.length > 0) throw this.#errors[0]!;
      this.#refresh();
      if (Date.now() > deadline) {
        throw new Error(
          `${this.identity}: timed out after ${timeoutMs} ms waiting for ${what} (agent state ${this.#agentState || 'unknown'}; states seen ${this.#statesSeen.join(' > ')})`,
        );
      }
      await sleep(20);
    }
  }

  #idle(): boolean {
    if (this.#openStreams > 0) return false;
    if (this.#agentState === 'listening') return true;
    // lk.agent.state updates can arrive out of order under CPU contention: we saw "thinking >
    // listening > speaking" and then nothing for 60 s, although the agent had finished and set
    // "listening" last. A "speaking" with no stream open for 2 s is taken as done.
    return this.#agentState === 'speaking' && Date.now() - this.#lastStreamEndedAt > QUIET_AFTER_SPEAKING_MS;
  }

  /** Wait for the agent's first words (a greeting or a notice) and for it to be listening again. */
  async waitForGreeting(timeoutMs = 60_000): Promise<string> {
    await this.#until(() => this.agentReplies.length > 0 && this.#idle(), 'the greeting', timeoutMs);
    return this.agentReplies.join('\n');
  }

  /** Send a message and wait for the whole reply (all streams, tool steps included). */
  async say(text: string, timeoutMs = 60_000): Promise<string> {
    await this.#until(() => this.#idle(), 'the agent to listen', timeoutMs);
    const before = this.transcript.length;
    this.transcript.push({ from: 'user', text, at: new Date() });
    const statesBefore = this.#statesSeen.length;
    await this.room.localParticipant!.sendText(text, { topic: 'lk.chat' });
    await this.#until(
      () => this.#statesSeen.length > statesBefore && this.transcript.length > before + 1 && this.#idle(),
      `the reply to ${JSON.stringify(text)}`,
      timeoutMs,
    );
    return this.transcript
      .slice(before + 1)
      .filter((l) => l.from === 'agent')
      .map((l) => l.text)
      .join('\n');
  }

  async leave(): Promise<void> {
    await this.room.disconnect();
  }
}
