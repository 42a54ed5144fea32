// Drives a running TdeEngine KMS server with two more official Alibaba Cloud clients:
//  * the Tea OpenAPI core (@alicloud/openapi-client), which every current generated SDK calls and
//    which signs with the V3 signature (ACS3-HMAC-SHA256 in an Authorization header) by default;
//  * the typed KMS client (@alicloud/kms20160120 1.x, RPC signature 1.0), which sends an
//    EncryptionContext map flattened (EncryptionContext.db=orders).
// Env: ENDPOINT (http://127.0.0.1:PORT), ROOT_AK, ROOT_SK (a root access key), USER_NAME, USER_AK,
// USER_SK (a RAM user allowed kms:DescribeKey and kms:Decrypt only, by the policy kms-sdk-test.mjs attaches).
// Prints "ok <step>" per step; exits 1 with "FAIL <step>: <why>" on the first failure.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { step, refused } from './steps.mjs';

const require = createRequire(import.meta.url);
const OpenApi = require('@alicloud/openapi-client');
const Util = require('@alicloud/tea-util');
const TypedKms = require('@alicloud/kms20160120');

const host = new URL(process.env.ENDPOINT).host;
const teaConfig = (ak, sk, securityToken) =>
  new OpenApi.Config({ accessKeyId: ak, accessKeySecret: sk, securityToken, endpoint: host, protocol: 'http', regionId: 'cn-hangzhou' });
const tea = (ak, sk, securityToken) => new OpenApi.default(teaConfig(ak, sk, securityToken));

// As a generated Tea SDK calls an RPC action: parameters in the query, or in a form body.
async function call(client, action, { query = {}, body, version = '2016-01-20' } = {}) {
  const params = new OpenApi.Params({
    action, version, protocol: 'HTTP', pathname: '/', method: 'POST', authType: 'AK', style: 'RPC', reqBodyType: 'formData', bodyType: 'json',
  });
  const request = new OpenApi.OpenApiRequest({ query, body });
  const response = await client.callApi(params, request, new Util.RuntimeOptions({}));
  assert.equal(response.statusCode, 200);
  return response.body;
}

// What the Tea core puts on the wire, seen where it hands each request to HTTP.
const Tea = require('@alicloud/tea-typescript');
const sent = [];
const doAction = Tea.doAction;
Tea.doAction = (request, runtime) => {
  sent.push({ authorization: request.headers.Authorization ?? request.headers.authorization, query: { ...request.query } });
  return doAction(request, runtime);
};
const root = tea(process.env.ROOT_AK, process.env.ROOT_SK);
const user = tea(process.env.USER_AK, process.env.USER_SK);
const context = JSON.stringify({ db: 'orders', tenant: 'tea' });

let keyId, dataKey;
await step('TeaCreateKey', async () => {
  const r = await call(root, 'CreateKey', { query: { Description: 'tea v3' } });
  keyId = r.KeyMetadata.KeyId;
  assert.equal(r.KeyMetadata.KeyState, 'Enabled');
});
await step('TeaSignsWithV3', async () => {
  assert.ok(sent.length > 0, 'no request was seen');
  for (const request of sent) {
    const [, signedHeaders] = request.authorization.match(/^ACS3-HMAC-SHA256 Credential=[^,]+,SignedHeaders=([^,]+),Signature=[0-9a-f]{64}$/) ?? [];
    for (const header of ['host', 'x-acs-action', 'x-acs-content-sha256', 'x-acs-date', 'x-acs-signature-nonce', 'x-acs-version']) {
      assert.ok(signedHeaders?.split(';').includes(header), `${header} is not signed in ${request.authorization}`);
    }
    assert.equal(request.query.Signature, undefined);
  }
});
await step('TeaGenerateDataKey', async () => {
  const r = await call(root, 'GenerateDataKey', { query: { KeyId: keyId, EncryptionContext: context } });
  assert.equal(Buffer.from(r.Plaintext, 'base64').length, 32);
  assert.equal(r.KeyId, keyId);
  dataKey = r;
});
await step('TeaDecryptWithFormBody', async () => {
  const r = await call(root, 'Decrypt', { body: { CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: context } });
  assert.equal(r.Plaintext, dataKey.Plaintext);
});
await step('TeaEncryptDescribeKey', async () => {
  const e = await call(root, 'Encrypt', { query: { KeyId: keyId }, body: { Plaintext: Buffer.from('hello tea').toString('base64') } });
  const d = await call(root, 'Decrypt', { query: { CiphertextBlob: e.CiphertextBlob } });
  assert.equal(Buffer.from(d.Plaintext, 'base64').toString(), 'hello tea');
  assert.equal((await call(root, 'DescribeKey', { query: { KeyId: keyId } })).KeyMetadata.Description, 'tea v3');
});
await step('TeaUserAllowedAndRefusedByPolicy', async () => {
  assert.equal((await call(user, 'DescribeKey', { query: { KeyId: keyId } })).KeyMetadata.KeyId, keyId);
  await refused(call(user, 'GenerateDataKey', { query: { KeyId: keyId } }), 'Forbidden.RAM');
});
await step('TeaWrongSignatureRefused', async () => {
  await refused(call(tea(process.env.ROOT_AK, 'not-the-secret'), 'ListKeys'), 'SignatureDoesNotMatch');
});
await step('TeaRoleSessionWithSecurityToken', async () => {
  // RAM and STS through the same core: a role the account trusts.
  const account = (await call(root, 'GetCallerIdentity', { version: '2015-04-01' })).AccountId;
  const trust = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { RAM: [`acs:ram::${account}:root`] } }] };
  const role = await call(root, 'CreateRole', { version: '2015-05-01', query: { RoleName: 'TeaKeyUser', AssumeRolePolicyDocument: JSON.stringify(trust) } });
  const use = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'kms:GenerateDataKey', Resource: 'acs:kms:*:*:key/*' }] };
  await call(root, 'CreatePolicy', { version: '2015-05-01', query: { PolicyName: 'TeaKeyUse', PolicyDocument: JSON.stringify(use) } });
  await call(root, 'AttachPolicyToRole', { version: '2015-05-01', query: { PolicyType: 'Custom', PolicyName: 'TeaKeyUse', RoleName: 'TeaKeyUser' } });
  // Roles are assumed by a RAM user (root keys may not): the user gets sts:AssumeRole on this role.
  const assume = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: role.Role.Arn }] };
  await call(root, 'CreatePolicy', { version: '2015-05-01', query: { PolicyName: 'TeaAssume', PolicyDocument: JSON.stringify(assume) } });
  await call(root, 'AttachPolicyToUser', { version: '2015-05-01', query: { PolicyType: 'Custom', PolicyName: 'TeaAssume', UserName: process.env.USER_NAME } });
  const assumed = await call(user, 'AssumeRole', { version: '2015-04-01', query: { RoleArn: role.Role.Arn, RoleSessionName: 'tea-session', DurationSeconds: '900' } });
  const c = assumed.Credentials;
  const session = tea(c.AccessKeyId, c.AccessKeySecret, c.SecurityToken);
  const r = await call(session, 'GenerateDataKey', { query: { KeyId: keyId, EncryptionContext: context } });
  assert.equal(Buffer.from(r.Plaintext, 'base64').length, 32);
  await refused(call(session, 'Decrypt', { query: { CiphertextBlob: r.CiphertextBlob, EncryptionContext: context } }), 'Forbidden.RAM');
  await refused(call(tea(c.AccessKeyId, c.AccessKeySecret, 'forged'), 'ListKeys'), 'InvalidSecurityToken.MismatchWithAccessKey');
});

// The typed KMS client of the RPC generation (signature 1.0).
const typed = new TypedKms.default(new (require('@alicloud/rpc-client').Config)({
  accessKeyId: process.env.ROOT_AK, accessKeySecret: process.env.ROOT_SK, endpoint: host, protocol: 'http', regionId: 'cn-hangzhou',
}));
let typedKey;
await step('TypedCreateKeyDescribeKey', async () => {
  const created = await typed.createKey(new TypedKms.CreateKeyRequest({ description: 'typed client' }));
  assert.equal(created.keyMetadata.keyState, 'Enabled');
  const described = await typed.describeKey(new TypedKms.DescribeKeyRequest({ keyId: created.keyMetadata.keyId }));
  assert.equal(described.keyMetadata.description, 'typed client');
  assert.match(described.keyMetadata.arn, /^acs:kms:/);
  typedKey = created.keyMetadata.keyId;
});
await step('TypedGenerateDataKeyWithContextMap', async () => {
  const generated = await typed.generateDataKey(new TypedKms.GenerateDataKeyRequest({ keyId: typedKey, encryptionContext: { db: 'orders', tenant: 'typed' } }));
  assert.equal(Buffer.from(generated.plaintext, 'base64').length, 32);
  assert.ok(generated.keyVersionId);
  // The map was bound: the same map opens it, the JSON form of it too (from the Tea core), another map does not.
  const decrypted = await typed.decrypt(new TypedKms.DecryptRequest({ ciphertextBlob: generated.ciphertextBlob, encryptionContext: { tenant: 'typed', db: 'orders' } }));
  assert.equal(decrypted.plaintext, generated.plaintext);
  const viaTea = await call(root, 'Decrypt', { query: { CiphertextBlob: generated.ciphertextBlob, EncryptionContext: JSON.stringify({ db: 'orders', tenant: 'typed' }) } });
  assert.equal(viaTea.Plaintext, generated.plaintext);
  // This client reports an error's Code with "Error" appended.
  await refused(typed.decrypt(new TypedKms.DecryptRequest({ ciphertextBlob: generated.ciphertextBlob, encryptionContext: { db: 'orders' } })), 'InvalidCiphertextError');
});
await step('EveryTeaRequestWasV3', async () => {
  const tea = sent.filter(r => r.authorization !== undefined);
  assert.ok(tea.length >= 15, `only ${tea.length} V3 requests were seen`);
  assert.ok(tea.every(r => r.authorization.startsWith('ACS3-HMAC-SHA256 ') && r.query.Signature === undefined));
});
console.log('all Tea and typed SDK steps passed');
