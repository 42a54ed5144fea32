// The step runner both SDK scripts share: "ok <step>" per step, "FAIL <step>: <why>" and exit 1 on the first failure.
import assert from 'node:assert/strict';

export async function step(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.code ?? ''} ${e.message}`);
    process.exit(1);
  }
}

// Awaits a call that must be refused with the given error code.
export async function refused(promise, code) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    return;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}
