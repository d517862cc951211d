/**
 * Asserting a coded failure: the log tests check the code of every refusal, because the code, not
 * the message, is what callers branch on.
 */
import { type ErrorCode, isSluiceError, type SluiceError } from '../../core/errors.ts';

/**
 * Awaits `promise` and returns the {@link SluiceError} it rejects with. Throws when it rejects with
 * anything else (the original error as the cause) or resolves, naming `code` and what came instead.
 */
export async function rejects(promise: Promise<unknown>, code: ErrorCode): Promise<SluiceError> {
  let outcome: unknown;
  try {
    outcome = await promise;
  } catch (err) {
    if (!isSluiceError(err, code)) throw new Error(`expected a SluiceError ${code}, got ${String(err)}`, { cause: err });
    return err;
  }
  throw new Error(`expected a SluiceError ${code}, but the call succeeded with ${String(outcome)}`);
}
