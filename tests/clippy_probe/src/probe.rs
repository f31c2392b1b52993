//! Every raw stable-memory write path a canister could take. Each marked line must be rejected by clippy.

use ic_cdk::stable::{BufferedStableWriter, CanisterStableMemory, StableIO, StableMemory, StableWriter};
use ic_stable_structures::writer::{BufferedWriter, Writer};
use ic_stable_structures::{DefaultMemoryImpl, Memory};

pub fn probe() {
    let _ = ic_cdk::storage::stable_save((1u8,)); // banned: stable_save
    let _ = ic_cdk::storage::stable_restore::<(u8,)>(); // banned: stable_restore
    ic_cdk::api::stable_write(0, b"x"); // banned: api::stable_write
    ic_cdk::api::stable_grow(1); // banned: api::stable_grow
    ic_cdk::stable::stable_write(0, b"x"); // banned: stable::stable_write
    let _ = ic_cdk::stable::stable_grow(1); // banned: stable::stable_grow
    CanisterStableMemory::default().stable_write(0, b"x"); // banned: StableMemory::stable_write
    let _ = CanisterStableMemory::default().stable_grow(1); // banned: StableMemory::stable_grow
    let mut io = StableIO::<CanisterStableMemory>::with_memory(CanisterStableMemory::default(), 0); // banned: StableIO::with_memory
    let _ = io.write(b"x"); // banned: StableIO::write
    let _ = io.grow(1); // banned: StableIO::grow
    let mut writer = StableWriter::<CanisterStableMemory>::with_memory(CanisterStableMemory::default(), 0); // banned: StableWriter::with_memory
    let _ = writer.write(b"x"); // banned: StableWriter::write
    let _ = writer.grow(1); // banned: StableWriter::grow
    let _ = BufferedStableWriter::new(8); // banned: BufferedStableWriter::new
    let _ = BufferedStableWriter::with_writer(8, writer); // banned: BufferedStableWriter::with_writer
    ic0::stable64_write(b"x", 0); // banned: ic0::stable64_write
    ic0::stable64_grow(1); // banned: ic0::stable64_grow
    unsafe { ic0::sys::stable64_write(0, 0, 0) }; // banned: ic0::sys::stable64_write
    unsafe { ic0::sys::stable64_grow(1) }; // banned: ic0::sys::stable64_grow
    let mut memory = DefaultMemoryImpl::default();
    memory.write(0, b"x"); // banned: Memory::write
    memory.grow(1); // banned: Memory::grow
    let structures_writer = Writer::new(&mut memory, 0); // banned: ic_stable_structures Writer::new
    let _ = BufferedWriter::new(8, structures_writer); // banned: ic_stable_structures BufferedWriter::new
}
