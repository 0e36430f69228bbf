//! The server's allocator and its settings, chosen by measurement (docs/performance.md).

// jemalloc: glibc's malloc spent a sixth of the server's time under Stripe's renewal mix
// consolidating and splitting chunks (payload-sized buffers among small ones). With it
// the mix runs about 9 % faster at the same peak memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Peak memory, measured on the renewal mix (28.7–30.4 MB with jemalloc's defaults, 26.5–27.2
// with these, at the same speed): one arena, since the server's threads share a core or
// two and each arena keeps dirty pages of its own; a thread cache for small sizes only;
// freed pages returned within half a second.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static, NUL-terminated string.
    Some(unsafe {
        &*c"narenas:1,tcache_max:4096,dirty_decay_ms:500,muzzy_decay_ms:0".as_ptr()
    });
