// A checkout flow, the one `checkout.test.ts` tests with weir/testing (and docs/testing.md explains):
// reserve the stock, then charge the card (retried a minute apart, 30 s a try) and have a large
// order approved by a person (within a day), then ship.
import { z } from 'zod';
import { Flow, Processor, type Step } from 'weir';

export const Order = z.object({ id: z.string(), total: z.number().positive() });
export type Order = z.infer<typeof Order>;
const Reservation = z.object({ reservation: z.string() });
const Receipt = z.object({ receipt: z.string() });
const Approval = z.object({ by: z.string() });
const Shipment = z.object({ tracking: z.string() });

/** The payment service the charge step calls; tests give one of their own. */
export interface Gateway {
  /** Charges `total`, once per `key` however often it is called; rejects with a `RetryableError` when busy, a `FatalError` when declined. */
  charge(key: string, total: number, signal: AbortSignal): Promise<string>;
}

/** Orders above this total wait for a person's approval. */
export const APPROVAL_ABOVE = 1000;

export class Reserve extends Processor<typeof Order, typeof Reservation> {
  readonly input = Order;
  readonly output = Reservation;
  process(order: Order): z.infer<typeof Reservation> {
    return { reservation: `res-${order.id}` };
  }
}

export class Charge extends Processor<typeof Order, typeof Receipt> {
  readonly input = Order;
  readonly output = Receipt;
  readonly #gateway: Gateway;
  constructor(gateway: Gateway) {
    super();
    this.#gateway = gateway;
  }
  async process(order: Order, step: Step): Promise<z.infer<typeof Receipt>> {
    // The step's idempotency key is the same on every attempt, and after a crash: the card is charged once.
    return { receipt: await this.#gateway.charge(step.idempotencyKey, order.total, step.signal) };
  }
}

export class Approve extends Processor<typeof Order, typeof Approval> {
  readonly input = Order;
  readonly output = Approval;
  async process(order: Order, step: Step): Promise<z.infer<typeof Approval>> {
    if (order.total <= APPROVAL_ABOVE) return { by: 'auto' };
    return step.waitForInput('approval', Approval, { timeout: 24 * 60 * 60 * 1000 });
  }
}

export class Ship extends Processor<typeof Order, typeof Shipment> {
  readonly input = Order;
  readonly output = Shipment;
  async process(order: Order, step: Step): Promise<z.infer<typeof Shipment>> {
    const { receipt } = (await step.deps.get<z.infer<typeof Receipt>>('charge'))!;
    const { by } = (await step.deps.get<z.infer<typeof Approval>>('approve'))!;
    return { tracking: `${order.id}/${receipt}/${by}` };
  }
}

/** What a completed checkout gives: each step's output. */
export interface Checkout {
  readonly reserve: z.infer<typeof Reservation>;
  readonly charge: z.infer<typeof Receipt>;
  readonly approve: z.infer<typeof Approval>;
  readonly ship: z.infer<typeof Shipment>;
}

/** The checkout flow, charging through `gateway`. */
export function checkoutFlow(gateway: Gateway): Flow<Order, Checkout> {
  const checkout = Flow.parallel<Order, Checkout>('checkout');
  const reserve = new Flow(new Reserve(), { name: 'reserve' }).registerTo(checkout);
  const charge = new Flow(new Charge(gateway), {
    name: 'charge',
    timeout: 30_000,
    retry: { maxAttempts: 6, initialInterval: 60_000, maxInterval: 60_000, jitter: 0 },
  }).registerTo(checkout, { required: [reserve] });
  const approve = new Flow(new Approve(), { name: 'approve' }).registerTo(checkout, { required: [reserve] });
  new Flow(new Ship(), { name: 'ship' }).registerTo(checkout, { required: [charge, approve] });
  return checkout;
}
