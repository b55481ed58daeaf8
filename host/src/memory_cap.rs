//! The memory a plugin's store may hold: `memory_mb` caps the sum of every
//! linear memory of the store (a component may have several core instances,
//! each with its own memory), not each memory alone; how many memories,
//! tables and instances one store may create; and how much of the shared
//! instance pool one plugin may hold ([`check_pool_share`]).

/// Memories one store may create (a Rust component has one or two, a
/// Python or JavaScript one a few).
pub const MAX_MEMORIES: usize = 10;
/// Tables one store may create.
pub const MAX_TABLES: usize = 50;
/// Core and component instances one store may create.
pub const MAX_INSTANCES: usize = 100;
/// Entries one table may hold.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Caps a store's linear memories at the plugin's `memory_mb` in total, and
/// remembers when a guest hit the cap so its trap can say so.
pub struct MemoryCap {
    limit: usize,
    /// Bytes of linear memory the store holds, over all its memories.
    total: usize,
    /// Linear memories the store has made.
    memories: usize,
    /// Set when the guest asked for more than `limit`.
    pub exceeded: bool,
}

impl MemoryCap {
    /// A cap of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            total: 0,
            memories: 0,
            exceeded: false,
        }
    }

    /// How many linear memories the store has made (one instance of the
    /// component, once instantiated).
    pub fn memories(&self) -> usize {
        self.memories
    }

    /// The cap in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The cap in MiB, for messages.
    pub fn limit_mb(&self) -> usize {
        self.limit >> 20
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    /// Called for a memory's creation too (`current` 0), so `total` counts
    /// every memory from its first page.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.exceeded = true;
            // Trap rather than fail the grow: a Rust guest would abort anyway,
            // and a trap names the cause.
            return Err(wasmtime::format_err!(
                "memory limit of {} MiB exceeded (the plugin asked for {} MiB in all)",
                self.limit >> 20,
                total.div_ceil(1 << 20)
            ));
        }
        self.total = total;
        if current == 0 {
            self.memories += 1;
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Whether a plugin whose instance makes `memories` linear memories can run
/// `concurrency` instances at once within its share of a pool of
/// `pool_memories` memories and `pool_instances` instances: at most half of
/// either, so one plugin cannot starve the others (whose messages would
/// otherwise fail for want of a slot). The error says what to lower.
pub fn check_pool_share(
    memories: usize,
    concurrency: usize,
    pool_memories: usize,
    pool_instances: usize,
) -> Result<(), String> {
    let (memory_share, instance_share) = (pool_memories / 2, pool_instances / 2);
    let per_instance = memories.max(1);
    if per_instance * concurrency <= memory_share && concurrency <= instance_share {
        return Ok(());
    }
    let most = (memory_share / per_instance).min(instance_share);
    Err(format!(
        "limits.concurrency = {concurrency} needs up to {} of the host's {pool_memories} instance memory slots \
         ({per_instance} per instance) and {concurrency} of its {pool_instances} instance slots; \
         a plugin may hold half of either: set limits.concurrency to {most} or less",
        per_instance * concurrency
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_cap_allows_up_to_the_limit_and_traps_beyond() {
        let mut cap = MemoryCap::new(16 << 20);
        assert!(cap.memory_growing(0, 16 << 20, None).unwrap());
        assert!(!cap.exceeded);
        let err = cap
            .memory_growing(16 << 20, (16 << 20) + 65536, None)
            .unwrap_err();
        assert!(cap.exceeded);
        assert!(
            err.to_string().contains("memory limit of 16 MiB exceeded"),
            "{err}"
        );
    }

    #[test]
    fn the_cap_is_on_the_sum_of_a_stores_memories() {
        let mut cap = MemoryCap::new(64 << 20);
        // Ten memories of 6 MiB fit in 64 MiB...
        for _ in 0..10 {
            assert!(cap.memory_growing(0, 6 << 20, None).unwrap());
        }
        // ...growing one of them by 5 MiB does not (65 MiB in all).
        assert!(cap.memory_growing(6 << 20, 11 << 20, None).is_err());
        assert!(cap.exceeded);
        // Growing within what is left still works.
        let mut cap = MemoryCap::new(64 << 20);
        assert!(cap.memory_growing(0, 32 << 20, None).unwrap());
        assert!(cap.memory_growing(0, 16 << 20, None).unwrap());
        assert!(cap.memory_growing(16 << 20, 32 << 20, None).unwrap());
        assert!(
            cap.memory_growing(32 << 20, (32 << 20) + 65536, None)
                .is_err()
        );
    }

    #[test]
    fn one_plugin_may_hold_half_the_pool() {
        assert!(check_pool_share(1, 256, 1000, 1000).is_ok());
        assert!(check_pool_share(1, 500, 1000, 1000).is_ok());
        let err = check_pool_share(1, 501, 1000, 1000).unwrap_err();
        assert!(err.contains("500 or less"), "{err}");
        // Ten memories per instance: fifty instances at most.
        assert!(check_pool_share(10, 50, 1000, 1000).is_ok());
        let err = check_pool_share(10, 64, 1000, 1000).unwrap_err();
        assert!(err.contains("640") && err.contains("50 or less"), "{err}");
    }

    #[test]
    fn memories_are_counted_as_they_are_made() {
        let mut cap = MemoryCap::new(64 << 20);
        cap.memory_growing(0, 1 << 20, None).unwrap();
        cap.memory_growing(0, 1 << 20, None).unwrap();
        cap.memory_growing(1 << 20, 2 << 20, None).unwrap();
        assert_eq!(cap.memories(), 2);
    }
}
