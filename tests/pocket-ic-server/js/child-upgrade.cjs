// The child's upgrade through @dfinity/pic, run against our server (POCKET_IC_BIN): install the child, write to it,
// stop, upgrade to the next release, start, and check that every member survived.
// Run by scripts/check-pic-js.sh, which installs @dfinity/pic from package-lock.json and builds the server.
'use strict';

const assert = require('node:assert/strict');
const { readFileSync } = require('node:fs');
const { resolve } = require('node:path');
const { PocketIc, PocketIcServer } = require('@dfinity/pic');
const { IDL } = require('@icp-sdk/core/candid');
const { Principal } = require('@icp-sdk/core/principal');

const WASM = resolve(__dirname, '../../../wasm');
const version = (dir) => readFileSync(`${WASM}/${dir}child.version`, 'utf8').trim();

// The part of child/child.did this script uses.
const idlFactory = ({ IDL }) => {
  const ChildError = IDL.Variant({
    TooLong: IDL.Record({ max: IDL.Nat64, field: IDL.Text, actual: IDL.Nat64 }),
    NotAllowed: IDL.Record({ caller: IDL.Principal }),
    NotFound: IDL.Record({ id: IDL.Text }),
    AlreadyExists: IDL.Record({ id: IDL.Text }),
    InvalidArgument: IDL.Record({ reason: IDL.Text }),
  });
  const Member = IDL.Record({
    id: IDL.Text,
    updated_at: IDL.Opt(IDL.Nat64),
    value: IDL.Vec(IDL.Nat8),
    name: IDL.Text,
    created_at: IDL.Nat64,
  });
  const MemberResult = IDL.Variant({ Ok: Member, Err: ChildError });
  const MemberInput = IDL.Record({ value: IDL.Vec(IDL.Nat8), name: IDL.Text });
  const DataChecksum = IDL.Record({ members: IDL.Nat64, sha256: IDL.Vec(IDL.Nat8) });
  return IDL.Service({
    add_member: IDL.Func([IDL.Text, MemberInput], [MemberResult], []),
    get_member: IDL.Func([IDL.Text], [MemberResult], ['query']),
    data_checksum: IDL.Func([], [DataChecksum], ['query']),
    version: IDL.Func([], [IDL.Text], ['query']),
  });
};
const ChildInitArg = IDL.Record({ parent: IDL.Principal });
const ChildUpgradeArg = IDL.Record({ parent: IDL.Opt(IDL.Principal) });

async function main() {
  const server = await PocketIcServer.start();
  try {
    const pic = await PocketIc.create(server.getUrl());
    const me = Principal.selfAuthenticating(new TextEncoder().encode('pic-js test controller'));

    const canisterId = await pic.createCanister({ sender: me });
    await pic.installCode({
      canisterId,
      wasm: `${WASM}/child.wasm.gz`,
      arg: IDL.encode([ChildInitArg], [{ parent: me }]),
      sender: me,
    });
    const child = pic.createActor(idlFactory, canisterId);
    child.setPrincipal(me);
    assert.equal(await child.version(), version(''));

    const names = ['ada', 'grace', 'edsger'];
    for (const name of names) {
      const added = await child.add_member(name, { name: name.toUpperCase(), value: [1, 2, 3] });
      assert.ok('Ok' in added, JSON.stringify(added, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    }
    const before = await child.data_checksum();
    assert.equal(before.members, 3n);

    await pic.stopCanister({ canisterId, sender: me });
    await pic.upgradeCanister({
      canisterId,
      wasm: `${WASM}/next/child.wasm.gz`,
      arg: IDL.encode([IDL.Opt(ChildUpgradeArg)], [[]]),
      sender: me,
    });
    await pic.startCanister({ canisterId, sender: me });

    assert.equal(await child.version(), version('next/'));
    assert.deepEqual(await child.data_checksum(), before);
    for (const name of names) {
      const member = await child.get_member(name);
      assert.equal(member.Ok.name, name.toUpperCase());
      assert.deepEqual([...member.Ok.value], [1, 2, 3]);
    }
    await pic.tearDown();
    console.log('@dfinity/pic: install, 3 writes, stop, upgrade, start: every member survived');
  } finally {
    await server.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
