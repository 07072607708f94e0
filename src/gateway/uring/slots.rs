//! A table of what the ring's operations belong to (links, connects), indexed by the slot their
//! user data carries; freed slots are reused, so the table is as large as the most ever open.

pub struct Slots<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slots<T> {
    pub fn new() -> Slots<T> {
        Slots { items: Vec::new(), free: Vec::new() }
    }

    /// Puts `item` in a free slot; returns the slot.
    pub fn insert(&mut self, item: T) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.items[slot] = Some(item);
                slot
            }
            None => {
                self.items.push(Some(item));
                self.items.len() - 1
            }
        }
    }

    pub fn get(&self, slot: usize) -> Option<&T> {
        self.items.get(slot)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.items.get_mut(slot)?.as_mut()
    }

    /// Takes the item out of `slot`, which is free again.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let item = self.items.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(item)
    }

    /// How many slots hold an item.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}
