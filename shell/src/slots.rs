//! A slab of connections whose ids carry a generation, so an id is never reused while a
//! stale reference to it may exist (an engine output for a connection that already left),
//! and the index of the I/O worker that owns them, so engine outputs can be routed by id
//! (see [`crate::door`]).

use crate::door::{Feeder, FEEDER_SHIFT};
use ferrocast_engine::ConnId;

/// The most I/O workers ids can name (the worker index takes the top byte of an id, whose
/// last value names the admin listener: [`crate::door::ADMIN`]).
pub(crate) const MAX_WORKERS: usize = crate::door::ADMIN.0 as usize;
const GENERATION_BITS: u32 = 24;
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Connections indexed by a small integer (the poll token) and named by a unique [`ConnId`]:
/// `worker << 56 | generation << 32 | index`, the generation counting modulo 2^24.
pub(crate) struct Slots<T> {
    worker: u8,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots::for_worker(0)
    }
}

impl<T> Slots<T> {
    /// An empty slab whose ids name worker `worker` (below [`MAX_WORKERS`]).
    pub(crate) fn for_worker(worker: usize) -> Self {
        Slots {
            worker: u8::try_from(worker).unwrap_or(u8::MAX),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// How many values are stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id the next [`Slots::insert`] will return, so a value can be built knowing it.
    pub(crate) fn next_id(&self) -> ConnId {
        match self.free.last() {
            Some(&index) => self.make_id(self.slots[index as usize].generation, index),
            None => self.make_id(0, self.slots.len() as u32),
        }
    }

    /// Stores `value` under [`Slots::next_id`]; returns its index.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                self.slots[index as usize].value = Some(value);
                index as usize
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                self.slots.len() - 1
            }
        }
    }

    /// The index an id lives at, if that id is still live.
    pub(crate) fn index_of(&self, id: ConnId) -> Option<usize> {
        if Feeder::of_conn(id) != Feeder(self.worker) {
            return None;
        }
        let index = (id.0 & u64::from(u32::MAX)) as usize;
        let generation = (id.0 >> 32) as u32 & GENERATION_MASK;
        let slot = self.slots.get(index)?;
        (slot.value.is_some() && slot.generation == generation).then_some(index)
    }

    /// The value at `index`.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.value.as_mut()
    }

    /// Removes and returns the value at `index`, retiring its id for good.
    pub(crate) fn remove(&mut self, index: usize) -> Option<T> {
        let slot = self.slots.get_mut(index)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    /// Indices of every stored value.
    pub(crate) fn indices(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].value.is_some())
            .collect()
    }

    fn make_id(&self, generation: u32, index: u32) -> ConnId {
        ConnId(
            u64::from(self.worker) << FEEDER_SHIFT
                | u64::from(generation & GENERATION_MASK) << 32
                | u64::from(index),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_reused_when_slots_are() {
        let mut slots = Slots::default();
        let first = slots.next_id();
        let index = slots.insert("a");
        assert_eq!(slots.index_of(first), Some(index));
        slots.remove(index);
        assert_eq!(slots.index_of(first), None);
        let second = slots.next_id();
        assert_ne!(first, second);
        assert_eq!(slots.insert("b"), index);
        assert_eq!(slots.index_of(second), Some(index));
        assert_eq!(slots.index_of(first), None);
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn ids_name_their_worker_and_other_workers_ids_are_unknown() {
        let mut zero = Slots::for_worker(0);
        let mut three = Slots::for_worker(3);
        let a = zero.next_id();
        zero.insert("a");
        let b = three.next_id();
        three.insert("b");
        assert_eq!(Feeder::of_conn(a), Feeder(0));
        assert_eq!(Feeder::of_conn(b), Feeder(3));
        assert_eq!(a.0 & 0xFFFF_FFFF, b.0 & 0xFFFF_FFFF);
        assert!(zero.index_of(b).is_none());
        assert!(three.index_of(a).is_none());
        assert!(three.index_of(b).is_some());
    }

    #[test]
    fn the_generation_wraps_without_touching_the_worker_bits() {
        let mut slots = Slots::for_worker(255);
        for _ in 0..3 {
            let index = slots.insert(());
            slots.remove(index);
        }
        slots.slots[0].generation = GENERATION_MASK;
        let last = slots.next_id();
        assert_eq!(Feeder::of_conn(last), Feeder(255));
        let index = slots.insert(());
        slots.remove(index);
        let wrapped = slots.next_id();
        assert_eq!(Feeder::of_conn(wrapped), Feeder(255));
        assert_eq!(wrapped.0 & !(0xFFu64 << 56), 0);
        assert_ne!(last, wrapped);
    }
}
