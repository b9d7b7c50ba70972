// A flow served over HTTP with its dashboard: `npm run demo:http`, then open the URL it prints.
// Orders go through reserve, then pack and label (at once, with progress), then approval by a
// person for large ones (answer it in the page's form). Ctrl-C stops it.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type Step } from 'weir';
import { serve } from 'weir/http';

const Order = z.object({ id: z.string(), items: z.number().int().positive(), total: z.number().positive() });
type Order = z.infer<typeof Order>;
const Done = z.object({ done: z.string() });
const Approval = z.object({ approvedBy: z.string().min(1), note: z.string().optional() });

/** Works through the order's items, reporting progress as it goes. */
class Work extends Processor<typeof Order, typeof Done> {
  readonly input = Order;
  readonly output = Done;
  async process(order: Order, step: Step): Promise<z.infer<typeof Done>> {
    for (let i = 1; i <= order.items; i++) {
      await sleep(150);
      step.progress(i / order.items, `${step.name}: item ${i} of ${order.items}`);
    }
    return { done: `${step.name} ${order.id}` };
  }
}

/** Orders over 100 wait for a person's approval. */
class Approve extends Processor<typeof Order, typeof Approval> {
  readonly input = Order;
  readonly output = Approval;
  async process(order: Order, step: Step): Promise<z.infer<typeof Approval>> {
    if (order.total <= 100) return { approvedBy: 'auto' };
    return step.waitForInput('approval', Approval);
  }
}

// Every step receives the order; the dependencies order them.
const orders = Flow.parallel<Order>('orders');
const reserve = new Flow(new Work(), { name: 'reserve' }).registerTo(orders);
const pack = new Flow(new Work(), { name: 'pack' }).registerTo(orders, { required: [reserve] });
const label = new Flow(new Work(), { name: 'label' }).registerTo(orders, { required: [reserve] });
new Flow(new Approve(), { name: 'approve' }).registerTo(orders, { required: [pack, label] });

// Runs are kept in .weir/ (or in the SQLite file WEIR_STORE names): stop it, start it again, and they are still there.
const file = process.env.WEIR_STORE ?? '.weir/http-demo.db';
mkdirSync(dirname(file), { recursive: true });
const ctx = new FlowContext({ results: ResultsManager.sqlite(file), recover: true });
ctx.register(orders);
const { url } = await serve(ctx, { port: Number(process.env.PORT ?? 0) });
console.log(`weir dashboard: ${url}`);

// A few orders to watch: a small one, a large one that waits for approval, and one more later.
const stamp = Date.now().toString(36);
const order = (id: string, items: number, total: number): void => {
  ctx.start(orders, { id, items, total }, { runId: `${id}-${stamp}`, mode: 'interactive' });
};
order('small', 4, 40);
order('large', 6, 900);
setTimeout(() => order('later', 8, 60), 2000).unref();

process.once('SIGINT', () => {
  console.log('closing');
  void ctx.close();
});
