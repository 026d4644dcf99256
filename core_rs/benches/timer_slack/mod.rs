//! Sleeps that end when asked, for benches that sleep until a command's planned time.

/// With the kernel's default timer slack (50 µs for a normal thread) each sleep of the calling
/// thread may end up to 50 µs late, and that lateness would count in every command's latency
/// as if the system under test had taken it. A slack of 1 ns wakes the thread when it asked
/// to be woken (give or take the scheduler).
pub fn sleep_on_time() {
    // SAFETY: prctl on the calling thread with constant integer arguments; no memory of ours.
    let refused = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) } != 0;
    assert!(!refused, "PR_SET_TIMERSLACK: {}", std::io::Error::last_os_error());
}
