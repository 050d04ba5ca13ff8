// A webhook receiver for the tests: verifies every request with the Standard Webhooks library (as a
// real receiver would), answers 204 to a good one and 400 to a forged one, and keeps what it took.
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

export interface Received {
  id: string;
  type: string;
  data: any;
}

export async function webhookReceiver(port: number, secret: string): Promise<{ received: Received[]; forged: () => number; close: () => void }> {
  const verifier = new Webhook(secret);
  const received: Received[] = [];
  let forged = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      try {
        const msg = verifier.verify(body, req.headers as Record<string, string>) as { type: string; data: unknown };
        received.push({ id: String(req.headers['webhook-id']), type: msg.type, data: msg.data });
        res.statusCode = 204;
      } catch {
        forged++;
        res.statusCode = 400;
      }
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { received, forged: () => forged, close: () => server.close() };
}
