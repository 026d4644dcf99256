//! Thread priorities: background work (snapshots, checkpoint digests) runs behind order entry
//! and the journal when they compete for the CPU.

/// Puts the calling thread behind the others for the CPU (nice 19): it runs in whatever time
/// order entry, the journal and Raft leave. Best effort: a refusal changes nothing but the
/// priority.
pub(crate) fn give_way_to_order_entry() {
    // SAFETY: a system call on the calling thread's id with constant arguments; it touches no
    // memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
}
