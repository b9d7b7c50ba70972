/**
 * The context-wide concurrency limit: a fixed number of slots, handed to waiting tasks in arrival
 * order. Every leaf attempt of every run passes through it, so it allocates nothing per task but
 * the task's own promise: a task is an owner and a number, not a closure (a general queue such as
 * p-queue cost about 3 µs a step here, most of an inline step's overhead).
 */

/** Who runs the tasks it adds: `runSlot(task)` is called once a slot is free, and holds it until its promise settles. */
export interface SlotOwner {
  runSlot(task: number): Promise<unknown>;
}

/** A fixed number of slots, each held by one running task; waiting tasks start in the order they were added. */
export class Slots {
  /** How many tasks may run at once. */
  readonly concurrency: number;
  #running = 0;
  /** Waiting tasks as owner, task pairs, from `#head` on. */
  #owners: SlotOwner[] = [];
  #tasks: number[] = [];
  #head = 0;
  readonly #free = (): void => {
    this.#running--;
    if (this.#head < this.#owners.length) this.#next();
  };

  constructor(concurrency: number) {
    this.concurrency = concurrency;
  }

  /** How many tasks run now. */
  get pending(): number {
    return this.#running;
  }

  /** How many tasks wait for a slot. */
  get size(): number {
    return this.#owners.length - this.#head;
  }

  /** Runs `owner.runSlot(task)` now if a slot is free, else once one is and the tasks added before it have started. */
  add(owner: SlotOwner, task: number): void {
    if (this.#running < this.concurrency && this.#head === this.#owners.length) {
      this.#start(owner, task);
      return;
    }
    this.#owners.push(owner);
    this.#tasks.push(task);
  }

  /** Forgets every waiting task: none of them will start. Running ones keep their slots until they end. */
  clear(): void {
    this.#owners = [];
    this.#tasks = [];
    this.#head = 0;
  }

  #next(): void {
    while (this.#running < this.concurrency && this.#head < this.#owners.length) {
      const owner = this.#owners[this.#head]!;
      const task = this.#tasks[this.#head]!;
      this.#head++;
      this.#start(owner, task);
    }
    if (this.#head === this.#owners.length) {
      this.#owners.length = 0;
      this.#tasks.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#owners.length) {
      // Drop what was started, so a long backlog does not keep its whole past.
      this.#owners = this.#owners.slice(this.#head);
      this.#tasks = this.#tasks.slice(this.#head);
      this.#head = 0;
    }
  }

  #start(owner: SlotOwner, task: number): void {
    this.#running++;
    let running: Promise<unknown>;
    try {
      running = owner.runSlot(task);
    } catch {
      // An owner's task reports its own failures; a throw still gives the slot back.
      this.#free();
      return;
    }
    running.then(this.#free, this.#free);
  }
}
