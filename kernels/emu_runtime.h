// emu_runtime.h - runs CUDA grids of the FastDSC kernels on the CPU (the `emu` backend).
//
// detector/engine/emu.py generates one C++ file that includes emu.h, this file, all_kernels.cu
// and a table of the kernels (FDSC_EMU_KERNEL), and builds it with g++ into a shared library
// that Python drives through ctypes. A launch mirrors cuLaunchKernel: kernel index, grid, block,
// dynamic shared bytes and an array of pointers to the argument values.
//
// Execution: the grid's blocks are shared among a few OS threads (FASTDSC_EMU_THREADS, default
// the number of CPUs); a block runs on one OS thread. A kernel launched with `sync` set runs
// each CUDA thread as a fiber (ucontext) and __syncthreads switches to the next fiber; when
// every live fiber of the block waits at the barrier they are released together. Without
// `sync` the threads of a block simply run one after another (faster; __syncthreads is then
// an error). Errors (a kernel throwing, divergent barriers, bad launch shapes) stop the launch
// and are returned to Python with a message. AddressSanitizer builds annotate every fiber
// switch, so out-of-bounds accesses on fiber stacks, in dynamic shared memory and in the
// device buffers (emu_malloc: exact-size heap blocks) are all reported.
#ifndef FASTDSC_EMU_RUNTIME_H
#define FASTDSC_EMU_RUNTIME_H

#include "emu.h"

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define FDSC_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FDSC_EMU_ASAN 1
#endif
#endif
#ifdef FDSC_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace emu {

FDSC_EMU_TLS dim3 tl_thread_idx, tl_block_idx, tl_block_dim, tl_grid_dim;
FDSC_EMU_TLS unsigned char* tl_dynamic_shared = nullptr;

struct Error : std::runtime_error {
    explicit Error(const std::string& m) : std::runtime_error(m) {}
};

// ---- argument unpacking: void** (like cuLaunchKernel) -> typed call -------------------------
template <typename T> struct TypeCode;
template <typename T> struct TypeCode<T*> { static constexpr char value = 'P'; };
template <> struct TypeCode<int> { static constexpr char value = 'i'; };
template <> struct TypeCode<unsigned> { static constexpr char value = 'I'; };
template <> struct TypeCode<float> { static constexpr char value = 'f'; };

template <typename F, F f> struct Trampoline;
template <typename... A, void (*f)(A...)> struct Trampoline<void (*)(A...), f> {
    template <std::size_t... I>
    static void call_impl(void** args, std::index_sequence<I...>) {
        f(*static_cast<typename std::decay<A>::type*>(args[I])...);
    }
    static void call(void** args) { call_impl(args, std::index_sequence_for<A...>{}); }
    static const char* signature() {
        static const char sig[] = {TypeCode<typename std::decay<A>::type>::value..., '\0'};
        return sig;
    }
};

struct KernelEntry {
    const char* name;
    void (*call)(void**);
    const char* (*signature)();
};

#define FDSC_EMU_KERNEL(name) \
    { #name, &::emu::Trampoline<decltype(&name), &name>::call, &::emu::Trampoline<decltype(&name), &name>::signature }

// ---- fibers --------------------------------------------------------------------------------
// On x86-64 a fiber switch saves the callee-saved registers and swaps stack pointers (a few
// nanoseconds); elsewhere, or with -DFDSC_EMU_UCONTEXT, it is ucontext's swapcontext (a system
// call per switch). Both are annotated for AddressSanitizer.
constexpr std::size_t kFiberStack = 64 * 1024;

#if defined(__x86_64__) && !defined(FDSC_EMU_UCONTEXT)
extern "C" void fdsc_emu_switch(void** save_sp, void* new_sp);
asm(R"(
    .text
    .p2align 4
    .globl fdsc_emu_switch
    .hidden fdsc_emu_switch
    .type fdsc_emu_switch, @function
fdsc_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fdsc_emu_switch, .-fdsc_emu_switch
)");

struct Context {
    void* sp = nullptr;
};

inline void context_init(Context& c, unsigned char* stack, std::size_t size, void (*entry)()) {
    std::uintptr_t top = reinterpret_cast<std::uintptr_t>(stack + size) & ~static_cast<std::uintptr_t>(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                   // entry's return address: never used
    *--sp = reinterpret_cast<void*>(entry);            // popped by `ret` (16-byte aligned slot)
    for (int i = 0; i < 6; ++i) *--sp = nullptr;       // rbp rbx r12 r13 r14 r15
    c.sp = sp;
}

inline void context_switch(Context& from, Context& to) { fdsc_emu_switch(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc;
};

inline void context_init(Context& c, unsigned char* stack, std::size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}

inline void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum FiberState { kReady, kAtBarrier, kDone };

struct Fiber {
    Context ctx;
    std::unique_ptr<unsigned char[]> stack;
    dim3 tid;
    FiberState state = kReady;
#ifdef FDSC_EMU_ASAN
    void* fake_stack = nullptr;
#endif
};

struct Launch {
    void (*call)(void**);
    void** args;
    dim3 grid, block;
    std::size_t shmem;
    bool sync;
};

struct Worker {
    const Launch* launch = nullptr;
    Context sched;
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
    std::string error;
#ifdef FDSC_EMU_ASAN
    const void* sched_bottom = nullptr;
    std::size_t sched_size = 0;
    void* sched_fake = nullptr;
#endif
};

thread_local Worker* tl_worker = nullptr;

inline void fiber_to_scheduler(Worker* w, Fiber* f, bool exiting) {
#ifdef FDSC_EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &f->fake_stack, w->sched_bottom, w->sched_size);
#else
    (void)exiting;
#endif
    context_switch(f->ctx, w->sched);
#ifdef FDSC_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &w->sched_bottom, &w->sched_size);
#endif
}

inline void fiber_entry() {
    Worker* w = tl_worker;
    Fiber* f = w->current;
#ifdef FDSC_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &w->sched_bottom, &w->sched_size);
#endif
    try {
        w->launch->call(w->launch->args);
    } catch (const std::exception& e) {
        if (w->error.empty()) w->error = e.what();
    }
    f->state = kDone;
    fiber_to_scheduler(w, f, true);
    std::abort();   // a finished fiber is never resumed
}

inline void scheduler_to_fiber(Worker* w, Fiber* f) {
    w->current = f;
    tl_thread_idx = f->tid;
#ifdef FDSC_EMU_ASAN
    __sanitizer_start_switch_fiber(&w->sched_fake, f->stack.get(), kFiberStack);
#endif
    context_switch(w->sched, f->ctx);
#ifdef FDSC_EMU_ASAN
    __sanitizer_finish_switch_fiber(w->sched_fake, nullptr, nullptr);
#endif
}

inline void syncthreads() {
    Worker* w = tl_worker;
    const dim3& b = tl_block_dim;
    if (w == nullptr || !w->launch->sync) {
        if (b.x * b.y * b.z == 1) return;
        throw Error("__syncthreads() in a kernel launched without barrier support "
                    "(declare it sync=True in detector/engine/launch.py)");
    }
    w->current->state = kAtBarrier;
    fiber_to_scheduler(w, w->current, false);
}

inline dim3 unflatten(long i, const dim3& d) {
    return dim3((unsigned)(i % d.x), (unsigned)((i / d.x) % d.y), (unsigned)(i / ((long)d.x * d.y)));
}

// Run one block as fibers; returns false (w->error set) if the block failed.
inline bool run_block_fibers(Worker* w) {
    const Launch& L = *w->launch;
    const long n = (long)L.block.x * L.block.y * L.block.z;
    for (long t = 0; t < n; ++t) {
        Fiber& f = w->fibers[t];
#ifdef FDSC_EMU_ASAN
        __asan_unpoison_memory_region(f.stack.get(), kFiberStack);
        f.fake_stack = nullptr;
#endif
        context_init(f.ctx, f.stack.get(), kFiberStack, &fiber_entry);
        f.tid = unflatten(t, L.block);
        f.state = kReady;
    }
    for (long round = 0;; ++round) {
        long done = 0, waiting = 0;
        for (long t = 0; t < n; ++t) {
            Fiber& f = w->fibers[t];
            if (f.state == kDone) continue;
            f.state = kReady;
            scheduler_to_fiber(w, &f);
            if (!w->error.empty()) return false;
        }
        for (long t = 0; t < n; ++t) {
            if (w->fibers[t].state == kDone) ++done;
            else ++waiting;
        }
        if (waiting == 0) return true;
        if (done > 0) {
            w->error = "divergent __syncthreads(): in block (" + std::to_string(tl_block_idx.x) + "," +
                       std::to_string(tl_block_idx.y) + "," + std::to_string(tl_block_idx.z) + ") " +
                       std::to_string(done) + " threads exited while " + std::to_string(waiting) +
                       " wait at barrier " + std::to_string(round + 1);
            return false;
        }
    }
}

inline bool run_block_plain(Worker* w) {
    const Launch& L = *w->launch;
    const long n = (long)L.block.x * L.block.y * L.block.z;
    try {
        for (long t = 0; t < n; ++t) {
            tl_thread_idx = unflatten(t, L.block);
            L.call(L.args);
        }
    } catch (const std::exception& e) {
        w->error = e.what();
        return false;
    }
    return true;
}

struct Runtime {
    std::mutex mutex;
    std::string last_error;
    int threads = 0;
};

inline Runtime& runtime() {
    static Runtime r;
    return r;
}

inline int default_threads() {
    const char* env = std::getenv("FASTDSC_EMU_THREADS");
    if (env && std::atoi(env) > 0) return std::atoi(env);
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? (int)hc : 1;
}

inline void worker_main(const Launch* L, std::atomic<long>* next, long total, std::atomic<bool>* failed,
                        std::string* error, std::mutex* error_mutex) {
    Worker w;
    w.launch = L;
    tl_worker = &w;
    tl_block_dim = L->block;
    tl_grid_dim = L->grid;
    std::vector<unsigned char> shared(L->shmem);
    tl_dynamic_shared = L->shmem ? shared.data() : nullptr;
    if (L->sync) {
        w.fibers.resize((std::size_t)L->block.x * L->block.y * L->block.z);
        for (Fiber& f : w.fibers) f.stack.reset(new unsigned char[kFiberStack]);
    }
    for (;;) {
        const long b = next->fetch_add(1);
        if (b >= total || failed->load()) break;
        tl_block_idx = unflatten(b, L->grid);
        if (L->shmem) std::memset(shared.data(), 0xff, L->shmem);
        const bool ok = L->sync ? run_block_fibers(&w) : run_block_plain(&w);
        if (!ok) {
            std::lock_guard<std::mutex> lock(*error_mutex);
            if (!failed->exchange(true)) *error = w.error;
            break;
        }
    }
    tl_worker = nullptr;
    tl_dynamic_shared = nullptr;
}

inline int launch(const KernelEntry& k, const Launch& L) {
    Runtime& rt = runtime();
    std::string error;
    const long threads = (long)L.block.x * L.block.y * L.block.z;
    const long total = (long)L.grid.x * L.grid.y * L.grid.z;
    if (threads < 1 || threads > 1024 || L.block.z > 64)
        error = "block " + std::to_string(L.block.x) + "x" + std::to_string(L.block.y) + "x" +
                std::to_string(L.block.z) + " exceeds CUDA's limits (1024 threads, z <= 64)";
    else if (total < 1 || L.grid.y > 65535 || L.grid.z > 65535)
        error = "grid " + std::to_string(L.grid.x) + "x" + std::to_string(L.grid.y) + "x" +
                std::to_string(L.grid.z) + " is empty or exceeds CUDA's limits (y, z <= 65535)";
    else if (L.shmem > 48 * 1024)
        error = "dynamic shared memory " + std::to_string(L.shmem) + " bytes exceeds the 48 KiB "
                "every supported GPU gives without opt-in";
    if (error.empty()) {
        std::atomic<long> next(0);
        std::atomic<bool> failed(false);
        std::mutex error_mutex;
        int n = rt.threads > 0 ? rt.threads : default_threads();
        n = (int)std::max(1L, std::min<long>(n, total));
        if (n == 1) {
            worker_main(&L, &next, total, &failed, &error, &error_mutex);
        } else {
            std::vector<std::thread> pool;
            for (int i = 0; i < n; ++i)
                pool.emplace_back(worker_main, &L, &next, total, &failed, &error, &error_mutex);
            for (std::thread& t : pool) t.join();
        }
    }
    std::lock_guard<std::mutex> lock(rt.mutex);
    if (error.empty()) return 0;
    rt.last_error = std::string(k.name) + ": " + error;
    return -1;
}

}  // namespace emu

// ---- the C interface used by detector/engine/emu.py -----------------------------------------
#define FDSC_EMU_EXPORT_TABLE(table)                                                               \
    extern "C" int emu_num_kernels() { return (int)(sizeof(table) / sizeof(table[0])); }           \
    extern "C" const char* emu_kernel_name(int i) { return table[i].name; }                        \
    extern "C" const char* emu_kernel_signature(int i) { return table[i].signature(); }            \
    extern "C" int emu_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned bx,           \
                              unsigned by, unsigned bz, unsigned long shmem, int sync,             \
                              void** args) {                                                       \
        ::emu::Launch L{table[i].call, args, dim3(gx, gy, gz), dim3(bx, by, bz), shmem, sync != 0};\
        return ::emu::launch(table[i], L);                                                         \
    }                                                                                              \
    extern "C" const char* emu_last_error() { return ::emu::runtime().last_error.c_str(); }        \
    extern "C" void emu_set_threads(int n) { ::emu::runtime().threads = n; }                       \
    extern "C" int emu_asan() {                                                                    \
        return FDSC_EMU_ASAN_FLAG;                                                                 \
    }                                                                                              \
    extern "C" void* emu_malloc(unsigned long n) {                                                 \
        void* p = std::malloc(n ? n : 1);                                                          \
        if (p) std::memset(p, 0xff, n);                                                            \
        return p;                                                                                  \
    }                                                                                              \
    extern "C" void emu_free(void* p) { std::free(p); }

#ifdef FDSC_EMU_ASAN
#define FDSC_EMU_ASAN_FLAG 1
#else
#define FDSC_EMU_ASAN_FLAG 0
#endif

#endif  // FASTDSC_EMU_RUNTIME_H
