//! A slab of connections whose ids carry a generation, so an id is never reused while a
//! stale reference to it may exist (an engine output for a connection that already left).

use ferrocast_engine::ConnId;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Connections indexed by a small integer (the poll token) and named by a unique [`ConnId`]:
/// `generation << 32 | index`.
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id the next [`Slots::insert`] will return, so a value can be built knowing it.
    pub fn next_id(&self) -> ConnId {
        match self.free.last() {
            Some(&index) => make_id(self.slots[index as usize].generation, index),
            None => make_id(0, self.slots.len() as u32),
        }
    }

    /// Stores `value` under [`Slots::next_id`]; returns its index.
    pub fn insert(&mut self, value: T) -> usize {
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
    pub fn index_of(&self, id: ConnId) -> Option<usize> {
        let index = (id.0 & u64::from(u32::MAX)) as usize;
        let slot = self.slots.get(index)?;
        (slot.value.is_some() && u64::from(slot.generation) == id.0 >> 32).then_some(index)
    }

    /// The value at `index`.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.value.as_mut()
    }

    /// The value with id `id`.
    pub fn by_id(&mut self, id: ConnId) -> Option<&mut T> {
        let index = self.index_of(id)?;
        self.get_mut(index)
    }

    /// Removes and returns the value at `index`, retiring its id for good.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let slot = self.slots.get_mut(index)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    /// Indices of every stored value.
    pub fn indices(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].value.is_some())
            .collect()
    }
}

fn make_id(generation: u32, index: u32) -> ConnId {
    ConnId(u64::from(generation) << 32 | u64::from(index))
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
        assert_eq!(slots.by_id(second).copied(), Some("b"));
        assert!(slots.by_id(first).is_none());
        assert_eq!(slots.len(), 1);
    }
}
