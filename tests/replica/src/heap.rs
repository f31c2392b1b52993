//! Canister heaps (Wasm linear memories) in mappings of their own, with copy-on-write journaling of a message's
//! writes, the way the IC's memory tracker does it (dfinity/ic `rs/memory_tracker`): during a message the heap is
//! read-only; the first write to a page faults, the fault handler saves the page and makes it writable again, and
//! a trap puts the saved pages back. Pages never written cost no memory: the mapping is reserved, not committed,
//! and pages found to hold only zeros (after an install, after a message grew the heap, or when a rollback would
//! write zeros back) are given back to the system. A heap can also be moved aside while a new instance is made
//! on its mapping ([`Heap::aside`]).

use std::cell::Cell;
use std::ptr;
use std::sync::Once;

/// Journaling granularity: one Wasm page. (The IC tracks 4 KiB pages; 64 KiB keeps the number of memory mappings
/// the kernel holds during a message small.)
pub const JOURNAL_PAGE: usize = 64 * 1024;
/// The granularity at which zero pages are given back.
const OS_PAGE: usize = 4096;

/// A reserved range of address space holding one heap, up to `capacity` bytes. It never moves, so the Wasm
/// memory built on it keeps its address when it grows.
pub struct Heap {
    base: *mut u8,
    capacity: usize,
}

impl Heap {
    /// Reserves `capacity` bytes (readable and writable, committed only where written).
    pub fn reserve(capacity: usize) -> Result<Self, String> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                capacity,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "cannot reserve {capacity} bytes for a heap: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self {
            base: base.cast(),
            capacity,
        })
    }

    /// The whole reservation as the buffer of a Wasm memory.
    ///
    /// # Safety
    ///
    /// The caller keeps the memory that uses the buffer from outliving this heap (it drops the `wasmi::Store`
    /// first), and has one such memory at a time.
    pub unsafe fn buffer(&self) -> &'static mut [u8] {
        // SAFETY: the mapping is `capacity` bytes long and lives until `self` is dropped (see above).
        unsafe { std::slice::from_raw_parts_mut(self.base, self.capacity) }
    }

    pub fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.capacity);
        // SAFETY: within the mapping, which is readable.
        unsafe { std::slice::from_raw_parts(self.base, len) }
    }

    /// Gives back to the system every 4 KiB page in `from..to` that holds only zeros (it reads as zeros
    /// afterwards, and costs nothing until written again).
    pub fn release_zero_pages(&self, from: usize, to: usize) {
        let bytes = self.bytes(to);
        let from = from.next_multiple_of(OS_PAGE);
        let whole = to / OS_PAGE * OS_PAGE;
        let mut run = None;
        for page in (from..whole).step_by(OS_PAGE) {
            let zero = bytes[page..page + OS_PAGE].iter().all(|b| *b == 0);
            match (zero, run) {
                (true, None) => run = Some(page),
                (false, Some(start)) => {
                    self.discard(start, page);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run {
            self.discard(start, whole);
        }
    }

    /// Makes `from..to` (whole 4 KiB pages) read as zeros again and gives its memory back.
    pub fn zero(&self, from: usize, to: usize) {
        assert!(from.is_multiple_of(OS_PAGE) && to.is_multiple_of(OS_PAGE) && to <= self.capacity);
        self.discard(from, to);
    }

    /// Runs `f` with the first `len` bytes (whole 4 KiB pages) moved aside and other pages in their place, of
    /// unspecified contents, then moves them back over whatever `f` left there; nothing is copied. Instantiating a
    /// module writes the whole initial memory (wasmi zeroes a static buffer, then applies the data segments): made
    /// inside `f`, a new instance gets an existing heap with its contents intact. The pages `f` wrote are kept for
    /// the next call of the same size (instances are made again and again for heaps of the same size), so that
    /// they need not be allocated and zeroed each time.
    pub fn aside<R>(&self, len: usize, f: impl FnOnce() -> R) -> R {
        if len == 0 {
            return f();
        }
        assert!(len.is_multiple_of(OS_PAGE) && len <= self.capacity);
        let parked = reserve(len);
        move_pages(self.base.cast(), parked, len);
        match SCRATCH.take() {
            Some((scratch, size)) if size == len => move_pages(scratch, self.base.cast(), len),
            other => {
                if let Some((scratch, size)) = other {
                    // SAFETY: a mapping of ours that nothing refers to.
                    unsafe { libc::munmap(scratch, size) };
                }
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED;
                // SAFETY: fills the hole the move left with zero pages.
                let filled =
                    unsafe { libc::mmap(self.base.cast(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
                if filled == libc::MAP_FAILED {
                    fatal("cannot map pages in a heap");
                }
            }
        }
        /// Puts the parked pages back, also if `f` panics.
        struct Back {
            parked: *mut libc::c_void,
            base: *mut libc::c_void,
            len: usize,
        }
        impl Drop for Back {
            fn drop(&mut self) {
                let scratch = reserve(self.len);
                move_pages(self.base, scratch, self.len);
                move_pages(self.parked, self.base, self.len);
                if self.len <= MAX_SCRATCH {
                    SCRATCH.set(Some((scratch, self.len)));
                } else {
                    // SAFETY: a mapping of ours that nothing refers to.
                    unsafe { libc::munmap(scratch, self.len) };
                }
            }
        }
        let _back = Back {
            parked,
            base: self.base.cast(),
            len,
        };
        f()
    }

    /// Bytes of the first `len` that are in RAM.
    pub fn resident_bytes(&self, len: usize) -> usize {
        let mut pages = vec![0u8; len.div_ceil(OS_PAGE)];
        // SAFETY: a page-aligned range inside the mapping, and one byte per page to write to.
        let r = unsafe { libc::mincore(self.base.cast(), len, pages.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        pages.iter().filter(|p| **p & 1 == 1).count() * OS_PAGE
    }

    fn discard(&self, from: usize, to: usize) {
        discard(self.base as usize + from, self.base as usize + to);
    }

    /// Starts journaling writes to the first `len` bytes (see the module doc); the caller ends it with
    /// [`Journal::commit`] or [`Journal::rollback`] on the same thread, before the next one starts.
    pub fn journal(&self, len: usize) -> Journal {
        install_fault_handler();
        let pages = len.div_ceil(JOURNAL_PAGE);
        let mut journal = Box::new(Tracked {
            base: self.base as usize,
            len: pages * JOURNAL_PAGE,
            dirty: vec![false; pages],
            saved_pages: Vec::with_capacity(pages),
            saved: Vec::with_capacity(pages * JOURNAL_PAGE),
        });
        if pages > 0 {
            protect(self.base, journal.len, libc::PROT_READ);
        }
        ACTIVE.with(|a| {
            assert!(a.get().is_null(), "a heap journal is already active on this thread");
            a.set(&mut *journal);
        });
        Journal { tracked: Some(journal) }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `reserve`; nothing uses it any more (see `buffer`).
        unsafe { libc::munmap(self.base.cast(), self.capacity) };
    }
}

/// What a journal knows while a message runs; the fault handler reaches it through [`ACTIVE`].
struct Tracked {
    base: usize,
    /// Bytes under journaling (whole journal pages).
    len: usize,
    dirty: Vec<bool>,
    /// Journal page numbers, in the order they were first written, and their contents before that.
    saved_pages: Vec<usize>,
    saved: Vec<u8>,
}

/// The writes of one message to a heap, saved page by page (see [`Heap::journal`]). Dropped without a decision,
/// it keeps the writes.
pub struct Journal {
    tracked: Option<Box<Tracked>>,
}

impl Journal {
    /// Keeps the writes.
    pub fn commit(mut self) {
        self.finish();
    }

    /// Puts back the pages the message wrote.
    pub fn rollback(mut self) {
        let Some(t) = self.finish() else {
            return;
        };
        for (i, page) in t.saved_pages.iter().enumerate() {
            let old = &t.saved[i * JOURNAL_PAGE..(i + 1) * JOURNAL_PAGE];
            let start = t.base + page * JOURNAL_PAGE;
            // 4 KiB pages that held zeros are given back rather than written (a query that used the stack must
            // not leave it in RAM).
            let mut zeros = None;
            for (j, chunk) in old.chunks(OS_PAGE).enumerate() {
                let at = start + j * OS_PAGE;
                if chunk.iter().all(|b| *b == 0) {
                    zeros.get_or_insert(at);
                    continue;
                }
                if let Some(from) = zeros.take() {
                    discard(from, at);
                }
                // SAFETY: a page inside the heap mapping, writable again after `finish`.
                unsafe { ptr::copy_nonoverlapping(chunk.as_ptr(), at as *mut u8, OS_PAGE) };
            }
            if let Some(from) = zeros {
                discard(from, start + JOURNAL_PAGE);
            }
        }
    }

    /// Ends journaling: the handler forgets it and the heap is writable again.
    fn finish(&mut self) -> Option<Box<Tracked>> {
        let t = self.tracked.take()?;
        ACTIVE.with(|a| a.set(ptr::null_mut()));
        if t.len > 0 {
            protect(t.base as *mut u8, t.len, libc::PROT_READ | libc::PROT_WRITE);
        }
        Some(t)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.finish();
    }
}

fn protect(addr: *mut u8, len: usize, prot: libc::c_int) {
    // SAFETY: a page-aligned range inside a heap mapping.
    let r = unsafe { libc::mprotect(addr.cast(), len, prot) };
    if r != 0 {
        // Not a recoverable condition for the replica (e.g. the kernel's mapping count limit).
        let e = std::io::Error::last_os_error();
        eprintln!("replica heap: mprotect failed: {e}");
        std::process::abort();
    }
}

/// Gives back the pages of addresses `from..to` (page-aligned, in a heap mapping): they read as zeros afterwards.
fn discard(from: usize, to: usize) {
    // SAFETY: a page-aligned range inside a heap mapping, which reads as zeros afterwards.
    unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED) };
}

/// An address range of `len` bytes for [`move_pages`] to move pages to.
fn reserve(len: usize) -> *mut libc::c_void {
    // SAFETY: a fresh anonymous mapping that nothing refers to.
    let to = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if to == libc::MAP_FAILED {
        fatal("cannot reserve address space");
    }
    to
}

/// Moves the pages of `from..from + len` (with their protection) to `to`, replacing the mapping there; `from` is
/// left unmapped. The kernel moves the page table entries, not the contents.
fn move_pages(from: *mut libc::c_void, to: *mut libc::c_void, len: usize) {
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    // SAFETY: both ranges are mappings of ours, of `len` bytes, which nothing refers to while this runs.
    if unsafe { libc::mremap(from, len, len, flags, to) } == libc::MAP_FAILED {
        fatal("cannot move heap pages");
    }
}

/// A failed mapping operation leaves a heap in no state to continue with.
fn fatal(what: &str) -> ! {
    eprintln!("replica heap: {what}: {}", std::io::Error::last_os_error());
    std::process::abort();
}

/// The largest scratch area [`Heap::aside`] keeps.
const MAX_SCRATCH: usize = 64 * 1024 * 1024;

thread_local! {
    /// Pages (address and size) that [`Heap::aside`] put in place of a heap last time.
    static SCRATCH: Cell<Option<(*mut libc::c_void, usize)>> = const { Cell::new(None) };
    /// The journal of the message running on this thread, if any.
    static ACTIVE: Cell<*mut Tracked> = const { Cell::new(ptr::null_mut()) };
}

/// The handlers that were installed before ours, for faults that are not heap writes.
static mut PREVIOUS: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };

fn install_fault_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (i, signal) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
            // SAFETY: installing a handler with sigaction; the previous one is kept for other faults.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fault as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                let previous = ptr::addr_of_mut!(PREVIOUS[i]);
                if libc::sigaction(signal, &action, previous) != 0 {
                    panic!(
                        "cannot install the heap fault handler: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    });
}

/// A write to a read-only heap page of the running message: save the page, make it writable, and return so the
/// write runs again. Any other fault goes to the handler that was there before.
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SIGSEGV and SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    let tracked = ACTIVE.with(|a| a.get());
    // SAFETY: a non-null pointer is the journal of the message running on this thread (set and cleared by it).
    if let Some(t) = unsafe { tracked.as_mut() } {
        if addr >= t.base && addr < t.base + t.len {
            let page = (addr - t.base) / JOURNAL_PAGE;
            if !t.dirty[page] {
                let start = t.base + page * JOURNAL_PAGE;
                // SAFETY: the page is readable; `saved` was reserved for every page, so this does not allocate.
                let old = unsafe { std::slice::from_raw_parts(start as *const u8, JOURNAL_PAGE) };
                t.saved.extend_from_slice(old);
                t.saved_pages.push(page);
                t.dirty[page] = true;
                protect(start as *mut u8, JOURNAL_PAGE, libc::PROT_READ | libc::PROT_WRITE);
            }
            return;
        }
    }
    let i = if signal == libc::SIGSEGV { 0 } else { 1 };
    // SAFETY: PREVIOUS was written once, before this handler could run.
    let previous = unsafe { *ptr::addr_of!(PREVIOUS[i]) };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action and return: the fault repeats and takes it.
        // SAFETY: resetting the signal's disposition.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: a handler installed with SA_SIGINFO has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO has this signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(heap: &Heap, len: usize) -> usize {
        heap.resident_bytes(len)
    }

    fn write(heap: &Heap, offset: usize, byte: u8) {
        // SAFETY: inside the mapping; a write to a protected page goes through the fault handler.
        unsafe { ptr::write_volatile(heap.base.add(offset), byte) };
    }

    fn read(heap: &Heap, offset: usize) -> u8 {
        heap.bytes(offset + 1)[offset]
    }

    #[test]
    fn a_rollback_puts_back_exactly_the_pages_the_message_wrote() {
        let len = 16 * JOURNAL_PAGE;
        let heap = Heap::reserve(len).unwrap();
        for page in 0..16 {
            write(&heap, page * JOURNAL_PAGE + 5, page as u8 + 1);
        }
        let journal = heap.journal(len);
        write(&heap, 3 * JOURNAL_PAGE + 5, 0xaa);
        write(&heap, 8 * JOURNAL_PAGE - 1, 0xbb); // the last byte of page 7
        write(&heap, 3 * JOURNAL_PAGE + 6, 0xcc); // page 3 again: saved once
        assert_eq!(journal.tracked.as_ref().unwrap().saved_pages, vec![3, 7]);
        journal.rollback();
        for page in 0..16 {
            assert_eq!(read(&heap, page * JOURNAL_PAGE + 5), page as u8 + 1);
        }
        assert_eq!(
            (read(&heap, 8 * JOURNAL_PAGE - 1), read(&heap, 3 * JOURNAL_PAGE + 6)),
            (0, 0)
        );
        // Committed writes stay, and the heap is writable without faults again.
        let journal = heap.journal(len);
        write(&heap, 9 * JOURNAL_PAGE, 0xdd);
        journal.commit();
        write(&heap, 9 * JOURNAL_PAGE + 1, 0xee);
        assert_eq!(
            (read(&heap, 9 * JOURNAL_PAGE), read(&heap, 9 * JOURNAL_PAGE + 1)),
            (0xdd, 0xee)
        );
    }

    #[test]
    fn pages_of_zeros_cost_no_memory() {
        let len = 1024 * 1024;
        let heap = Heap::reserve(4 * len).unwrap();
        assert_eq!(resident(&heap, len), 0, "reserved, not committed");
        for offset in (0..len).step_by(OS_PAGE) {
            write(&heap, offset, 0);
        }
        write(&heap, 5 * OS_PAGE + 7, 1);
        write(&heap, 200 * OS_PAGE, 2);
        assert_eq!(resident(&heap, len), len);
        heap.release_zero_pages(0, len);
        assert_eq!(resident(&heap, len), 2 * OS_PAGE);
        assert_eq!((read(&heap, 5 * OS_PAGE + 7), read(&heap, 200 * OS_PAGE)), (1, 2));
        assert_eq!(read(&heap, 100 * OS_PAGE), 0);
        // A rolled-back write to a page of zeros does not leave it in RAM; one to a page with data restores it.
        let journal = heap.journal(len);
        write(&heap, 100 * OS_PAGE, 3);
        write(&heap, 5 * OS_PAGE + 8, 4);
        journal.rollback();
        assert_eq!(resident(&heap, len), 2 * OS_PAGE);
        assert_eq!(
            (
                read(&heap, 100 * OS_PAGE),
                read(&heap, 5 * OS_PAGE + 7),
                read(&heap, 5 * OS_PAGE + 8)
            ),
            (0, 1, 0)
        );
    }

    #[test]
    fn a_heap_moved_aside_comes_back_as_it_was() {
        let len = 64 * OS_PAGE;
        let heap = Heap::reserve(2 * len).unwrap();
        write(&heap, 3, 1);
        write(&heap, 40 * OS_PAGE, 2);
        for round in 0..2 {
            heap.aside(len, || {
                if round == 0 {
                    assert!(
                        heap.bytes(len).iter().all(|b| *b == 0),
                        "fresh zero pages the first time"
                    );
                } else {
                    assert_eq!(read(&heap, 0), 0xff, "the scratch pages of the first time");
                }
                for offset in (0..len).step_by(OS_PAGE) {
                    write(&heap, offset, 0xff);
                }
            });
            assert_eq!((read(&heap, 3), read(&heap, 40 * OS_PAGE), read(&heap, 0)), (1, 2, 0));
            assert_eq!(
                resident(&heap, len),
                2 * OS_PAGE,
                "what was written aside is not in the heap"
            );
        }
        write(&heap, len + 1, 3); // the rest of the reservation is still there
        assert_eq!(read(&heap, len + 1), 3);
    }
}
