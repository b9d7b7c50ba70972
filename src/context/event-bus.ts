/** A context's listeners: every run's events, delivered in `seq` order per run, a listener's bug kept from the run. */
import { EventEmitter } from 'eventemitter3';
import { WarningCode } from '../errors/errors.js';
import type { WeirEvent, WeirEventMap } from '../model/events.js';
import { DrainQueue } from '../util/drain-queue.js';

/** Listeners by event type, and `event` for all of them. */
export class EventBus {
  // Untyped inside; `on`, `once` and `off` give the typed view.
  readonly #emitter = new EventEmitter();
  /**
   * An event published while listeners run (a listener that cancels a run, say) waits its turn, so
   * every listener sees each run's events in `seq` order.
   */
  readonly #backlog = new DrainQueue<WeirEvent>((event) => this.#deliver(event));

  /** Delivers an event to the listeners of its type and of `event`. */
  readonly publish = (event: WeirEvent): void => this.#backlog.push(event);

  on<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): void {
    this.#emitter.on(type, listener);
  }

  once<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): void {
    this.#emitter.once(type, listener);
  }

  off<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): void {
    this.#emitter.off(type, listener);
  }

  /** How many listeners `type` has. */
  listenerCount(type: keyof WeirEventMap): number {
    return this.#emitter.listenerCount(type);
  }

  /** Drops every listener. */
  clear(): void {
    this.#emitter.removeAllListeners();
  }

  #deliver(event: WeirEvent): void {
    // A listener's bug must not break the run that emitted the event.
    try {
      this.#emitter.emit(event.type, event);
      this.#emitter.emit('event', event);
    } catch (error) {
      process.emitWarning(`weir: a listener of "${event.type}" threw: ${String(error)}`, { code: WarningCode.LISTENER_ERROR });
    }
  }
}
