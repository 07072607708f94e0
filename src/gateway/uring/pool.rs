//! A pool of receive buffers lent to the kernel through a registered buffer ring: a receive
//! takes one only when its bytes arrive, so a waiting connection holds none. The pool starts
//! with one chunk of buffers and grows by a chunk when it runs low, up to its ring's size.

use io_uring::types::BufRingEntry;
use io_uring::IoUring;
use std::alloc::Layout;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// Buffers added at a time.
const CHUNK: u16 = 64;

pub struct Pool {
    /// The buffer group receives name.
    pub group: u16,
    /// Each buffer's size.
    pub size: usize,
    ring: *mut BufRingEntry,
    layout: Layout,
    /// Entries of the ring: the most buffers the pool may have (a power of two).
    entries: u16,
    chunks: Vec<Box<[u8]>>,
    tail: u16,
    /// Buffers out of the ring: received into, not yet given back.
    out: u16,
}

impl Pool {
    /// Registers a pool of buffers of `size` bytes as `group` of `uring`, up to `entries`.
    pub fn new(uring: &IoUring, group: u16, size: usize, entries: u16) -> io::Result<Pool> {
        debug_assert!(entries.is_power_of_two() && entries >= CHUNK);
        let layout =
            Layout::from_size_align(entries as usize * size_of::<BufRingEntry>(), 4096).map_err(io::Error::other)?;
        // SAFETY: the layout's size is not zero.
        let ring = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut pool = Pool { group, size, ring, layout, entries, chunks: Vec::new(), tail: 0, out: 0 };
        // SAFETY: the ring's memory lives as long as the pool, which is dropped after the ring
        // (the engine's field order).
        unsafe { uring.submitter().register_buf_ring_with_flags(ring as u64, entries, group, 0)? };
        pool.grow();
        Ok(pool)
    }

    /// Adds a chunk of buffers; false when the pool is at its largest.
    pub fn grow(&mut self) -> bool {
        let made = self.made();
        if made >= self.entries {
            return false;
        }
        // Zeroed memory from the allocator is mapped lazily: a buffer costs memory once used.
        self.chunks.push(vec![0; CHUNK as usize * self.size].into_boxed_slice());
        for buffer in made..made + CHUNK {
            self.lend(buffer);
        }
        true
    }

    /// Notes that a receive took a buffer out of the ring.
    pub fn taken(&mut self) {
        self.out += 1;
    }

    /// True when fewer than a quarter of the buffers are left in the ring and the pool cannot
    /// grow: then what is received is copied out and its buffer given back at once, so the
    /// buffers held by sends that wait on slow readers never leave the ring empty for good.
    pub fn running_low(&mut self) -> bool {
        self.made() - self.out < self.made() / 4 && !self.grow()
    }

    /// Buffers the pool has made.
    fn made(&self) -> u16 {
        self.chunks.len() as u16 * CHUNK
    }

    pub fn bytes(&self, buffer: u16, len: usize) -> &[u8] {
        let chunk = &self.chunks[(buffer / CHUNK) as usize];
        let start = (buffer % CHUNK) as usize * self.size;
        &chunk[start..start + len]
    }

    pub fn address(&self, buffer: u16) -> *const u8 {
        self.bytes(buffer, self.size).as_ptr()
    }

    /// Lends a buffer taken out of the ring to the kernel again.
    pub fn give_back(&mut self, buffer: u16) {
        self.out -= 1;
        self.lend(buffer);
    }

    fn lend(&mut self, buffer: u16) {
        let index = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: `index` is within the ring, and the kernel reads entries only up to the tail.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(self.address(buffer) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(buffer);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the first entry's last field, which the kernel reads.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ring.cast(), self.layout) };
    }
}
