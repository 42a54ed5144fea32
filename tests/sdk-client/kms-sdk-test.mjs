// Drives a running TdeEngine KMS server with the official Alibaba Cloud RPC client (@alicloud/pop-core).
// Env: ENDPOINT, ROOT_AK, ROOT_SK (a root access key), USER_NAME, USER_AK, USER_SK (a RAM user's key, no policy yet).
// Prints "ok <step>" per step; exits 1 with "FAIL <step>: <why>" on the first failure.
import Core from '@alicloud/pop-core';
import assert from 'node:assert/strict';
import { step, refused } from './steps.mjs';

const endpoint = process.env.ENDPOINT;
const kms = (ak, sk) => new Core({ accessKeyId: ak, accessKeySecret: sk, endpoint, apiVersion: '2016-01-20' });
const ram = (ak, sk) => new Core({ accessKeyId: ak, accessKeySecret: sk, endpoint, apiVersion: '2015-05-01' });
const sts = (ak, sk, securityToken) => new Core({ accessKeyId: ak, accessKeySecret: sk, securityToken, endpoint, apiVersion: '2015-04-01' });
const root = kms(process.env.ROOT_AK, process.env.ROOT_SK);
const rootRam = ram(process.env.ROOT_AK, process.env.ROOT_SK);
const user = kms(process.env.USER_AK, process.env.USER_SK);
const post = { method: 'POST' };

let keyId, otherKeyId, blob, dataKey;
await step('CreateKey', async () => {
  const r = await root.request('CreateKey', { Description: 'sdk test' }, post);
  keyId = r.KeyMetadata.KeyId;
  assert.equal(r.KeyMetadata.KeyState, 'Enabled');
  otherKeyId = (await root.request('CreateKey', { Description: 'sdk destination' }, post)).KeyMetadata.KeyId;
});
await step('DescribeKey', async () => {
  const r = await root.request('DescribeKey', { KeyId: keyId }, post);
  assert.equal(r.KeyMetadata.KeyId, keyId);
  assert.match(r.KeyMetadata.Arn, /^acs:kms:/);
});
await step('ListKeys', async () => {
  const r = await root.request('ListKeys', { PageSize: 100 }, post);
  assert.ok(r.Keys.Key.some(k => k.KeyId === keyId));
});
await step('CreateAlias', async () => {
  await root.request('CreateAlias', { AliasName: 'alias/sdk-test', KeyId: keyId }, post);
  assert.equal((await root.request('DescribeKey', { KeyId: 'alias/sdk-test' }, post)).KeyMetadata.KeyId, keyId);
});
await step('GenerateDataKey', async () => {
  const r = await root.request('GenerateDataKey', { KeyId: 'alias/sdk-test', EncryptionContext: JSON.stringify({ db: 'orders' }) }, post);
  assert.equal(Buffer.from(r.Plaintext, 'base64').length, 32);
  dataKey = r;
});
await step('Decrypt', async () => {
  const r = await root.request('Decrypt', { CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: JSON.stringify({ db: 'orders' }) }, post);
  assert.equal(r.Plaintext, dataKey.Plaintext);
});
await step('Encrypt', async () => {
  const r = await root.request('Encrypt', { KeyId: keyId, Plaintext: Buffer.from('hello sdk').toString('base64') }, post);
  blob = r.CiphertextBlob;
  const d = await root.request('Decrypt', { CiphertextBlob: blob }, post);
  assert.equal(Buffer.from(d.Plaintext, 'base64').toString(), 'hello sdk');
});
await step('ReEncrypt', async () => {
  const r = await root.request('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: otherKeyId }, post);
  assert.equal(r.KeyId, otherKeyId);
  const d = await root.request('Decrypt', { CiphertextBlob: r.CiphertextBlob }, post);
  assert.equal(Buffer.from(d.Plaintext, 'base64').toString(), 'hello sdk');
});
await step('CreateKeyVersion', async () => {
  const r = await root.request('CreateKeyVersion', { KeyId: keyId }, post);
  assert.ok(r.KeyVersion.KeyVersionId);
  const d = await root.request('Decrypt', { CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: JSON.stringify({ db: 'orders' }) }, post);
  assert.equal(d.Plaintext, dataKey.Plaintext);
});
await step('TagResource', async () => {
  await root.request('TagResource', { KeyId: keyId, Tags: JSON.stringify([{ TagKey: 'env', TagValue: 'sdk' }]) }, post);
  const r = await root.request('ListResourceTags', { KeyId: keyId }, post);
  assert.equal(r.Tags.Tag[0].TagValue, 'sdk');
});
await step('UserWithoutPolicyRefused', async () => {
  await refused(user.request('DescribeKey', { KeyId: keyId }, post), 'Forbidden.RAM');
});
await step('UserAllowedAfterAttachPolicy', async () => {
  const document = JSON.stringify({ Version: '1', Statement: [{ Effect: 'Allow', Action: ['kms:DescribeKey', 'kms:Decrypt'], Resource: 'acs:kms:*:*:key/*' }] });
  await rootRam.request('CreatePolicy', { PolicyName: 'SdkDescribe', PolicyDocument: document }, post);
  await rootRam.request('AttachPolicyToUser', { PolicyType: 'Custom', PolicyName: 'SdkDescribe', UserName: process.env.USER_NAME }, post);
  assert.equal((await user.request('DescribeKey', { KeyId: keyId }, post)).KeyMetadata.KeyId, keyId);
});
let session;
await step('AssumeRole', async () => {
  // A role the account trusts, allowed to use keys; the user may assume it (sts:AssumeRole on the role).
  const account = (await sts(process.env.ROOT_AK, process.env.ROOT_SK).request('GetCallerIdentity', {}, post)).AccountId;
  const trust = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { RAM: [`acs:ram::${account}:root`] } }] };
  const role = await rootRam.request('CreateRole', { RoleName: 'SdkKeyUser', AssumeRolePolicyDocument: JSON.stringify(trust) }, post);
  const use = { Version: '1', Statement: [{ Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: 'acs:kms:*:*:key/*' }] };
  await rootRam.request('CreatePolicy', { PolicyName: 'SdkKeyUse', PolicyDocument: JSON.stringify(use) }, post);
  await rootRam.request('AttachPolicyToRole', { PolicyType: 'Custom', PolicyName: 'SdkKeyUse', RoleName: 'SdkKeyUser' }, post);
  const assume = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: role.Role.Arn }] };
  await rootRam.request('CreatePolicy', { PolicyName: 'SdkAssume', PolicyDocument: JSON.stringify(assume) }, post);
  await rootRam.request('AttachPolicyToUser', { PolicyType: 'Custom', PolicyName: 'SdkAssume', UserName: process.env.USER_NAME }, post);
  const r = await sts(process.env.USER_AK, process.env.USER_SK).request('AssumeRole', { RoleArn: role.Role.Arn, RoleSessionName: 'sdk-session', DurationSeconds: 900 }, post);
  assert.match(r.Credentials.AccessKeyId, /^STS\./);
  assert.ok(r.Credentials.SecurityToken.length > 32);
  assert.equal(r.AssumedRoleUser.Arn, `${role.Role.Arn}/sdk-session`);
  session = { ...r.Credentials, roleArn: role.Role.Arn };
});
await step('RoleSessionUsesKeys', async () => {
  const who = await sts(session.AccessKeyId, session.AccessKeySecret, session.SecurityToken).request('GetCallerIdentity', {}, post);
  assert.equal(who.IdentityType, 'AssumedRoleUser');
  const client = new Core({ accessKeyId: session.AccessKeyId, accessKeySecret: session.AccessKeySecret, securityToken: session.SecurityToken, endpoint, apiVersion: '2016-01-20' });
  const r = await client.request('GenerateDataKey', { KeyId: keyId, EncryptionContext: JSON.stringify({ db: 'orders' }) }, post);
  assert.equal(Buffer.from(r.Plaintext, 'base64').length, 32);
  await refused(client.request('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }, post), 'Forbidden.RAM');
});
await step('WrongSecurityTokenRefused', async () => {
  const forged = new Core({ accessKeyId: session.AccessKeyId, accessKeySecret: session.AccessKeySecret, securityToken: 'forged', endpoint, apiVersion: '2016-01-20' });
  await refused(forged.request('ListKeys', {}, post), 'InvalidSecurityToken.MismatchWithAccessKey');
});
await step('SessionPolicyNarrowsRole', async () => {
  // The same role, assumed with a session policy (JSON in a signed parameter): only GenerateDataKey.
  const policy = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'kms:GenerateDataKey', Resource: 'acs:kms:*:*:key/*' }] };
  const r = await sts(process.env.USER_AK, process.env.USER_SK).request('AssumeRole',
    { RoleArn: session.roleArn, RoleSessionName: 'sdk-narrow', DurationSeconds: 900, Policy: JSON.stringify(policy) }, post);
  const narrow = new Core({ accessKeyId: r.Credentials.AccessKeyId, accessKeySecret: r.Credentials.AccessKeySecret, securityToken: r.Credentials.SecurityToken, endpoint, apiVersion: '2016-01-20' });
  const key = await narrow.request('GenerateDataKey', { KeyId: keyId }, post);
  await refused(narrow.request('Decrypt', { CiphertextBlob: key.CiphertextBlob }, post), 'Forbidden.RAM');
  await refused(sts(process.env.USER_AK, process.env.USER_SK).request('AssumeRole',
    { RoleArn: session.roleArn, RoleSessionName: 'sdk-bad', Policy: '{"Statement":[{"Effect":"Perhaps"}]}' }, post), 'InvalidParameter.PolicyGrammar');
});
await step('ExternalIdRequiredByTrustPolicy', async () => {
  const account = (await sts(process.env.ROOT_AK, process.env.ROOT_SK).request('GetCallerIdentity', {}, post)).AccountId;
  const trust = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { RAM: [`acs:ram::${account}:root`] },
    Condition: { StringEquals: { 'sts:ExternalId': 'partner-42' } } }] };
  const role = await rootRam.request('CreateRole', { RoleName: 'SdkPartner', AssumeRolePolicyDocument: JSON.stringify(trust) }, post);
  const assume = { Version: '1', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: role.Role.Arn }] };
  await rootRam.request('CreatePolicy', { PolicyName: 'SdkAssumePartner', PolicyDocument: JSON.stringify(assume) }, post);
  await rootRam.request('AttachPolicyToUser', { PolicyType: 'Custom', PolicyName: 'SdkAssumePartner', UserName: process.env.USER_NAME }, post);
  const user = sts(process.env.USER_AK, process.env.USER_SK);
  await refused(user.request('AssumeRole', { RoleArn: role.Role.Arn, RoleSessionName: 'no-id' }, post), 'NoPermission');
  const r = await user.request('AssumeRole', { RoleArn: role.Role.Arn, RoleSessionName: 'with-id', ExternalId: 'partner-42' }, post);
  assert.match(r.Credentials.AccessKeyId, /^STS\./);
});
await step('DisableKeyThenDecryptRefused', async () => {
  await root.request('DisableKey', { KeyId: keyId }, post);
  await refused(root.request('Decrypt', { CiphertextBlob: blob }, post), 'Rejected.Disabled');
});
await step('ScheduleKeyDeletion', async () => {
  await root.request('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }, post);
  assert.equal((await root.request('DescribeKey', { KeyId: keyId }, post)).KeyMetadata.KeyState, 'PendingDeletion');
});
await step('WrongSignatureRefused', async () => {
  await refused(kms(process.env.ROOT_AK, 'not-the-secret').request('ListKeys', {}, post), 'SignatureDoesNotMatch');
});
await step('UnknownAccessKeyRefused', async () => {
  await refused(kms('LTAInotarealkey000000000', 'x').request('ListKeys', {}, post), 'InvalidAccessKeyId.NotFound');
});
console.log('all SDK steps passed');
