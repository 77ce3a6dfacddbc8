/*
 * npusim_runtime: the simulated NPU driver.
 *
 * A C-style API in the shape of a vendor runtime (devices, memory, streams, events,
 * copies, kernel launches). It knows nothing about PyTorch: a vendor replaces this
 * directory with its own driver and keeps everything built on top of it.
 *
 * Execution model: device memory is host memory owned by the runtime, and work
 * launched on a stream runs at once, in order, on the calling thread. Streams and
 * events are still real objects (ordering, timing, launch accounting, validation).
 *
 * Configuration (read once, at first use):
 *   NPUSIM_DEVICE_COUNT   number of devices, 0 to 64 (default 8)
 *   NPUSIM_DEVICE_MEMORY  capacity per device: bytes or a size such as 512MiB, 1.5GiB
 *                         (default 16GiB, committed lazily)
 *   NPUSIM_DEVICE_NAME    device name, 1 to 63 bytes (default "NPUSim-1")
 * An invalid value is a configuration error (npusimGetConfigurationError): there are then
 * no devices and the calls return npusimErrorInvalidConfiguration.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  npusimSuccess = 0,
  npusimErrorInvalidValue = 1,
  npusimErrorMemoryAllocation = 2,
  npusimErrorInvalidDevice = 3,
  npusimErrorInvalidDevicePointer = 4,
  npusimErrorInvalidResourceHandle = 5,
  npusimErrorNotReady = 6,
  npusimErrorEventNotRecorded = 7,
  npusimErrorTimingDisabled = 8,
  npusimErrorInvalidConfiguration = 9,
  npusimErrorNotSupported = 10, /* e.g. an allocation that cannot be shared with other processes */
} npusimError_t;

typedef struct npusimStream_st* npusimStream_t; /* NULL: the device's default stream */
typedef struct npusimEvent_st* npusimEvent_t;

typedef enum {
  npusimMemcpyHostToHost = 0,
  npusimMemcpyHostToDevice = 1,
  npusimMemcpyDeviceToHost = 2,
  npusimMemcpyDeviceToDevice = 3,
} npusimMemcpyKind;

typedef enum {
  npusimMemoryTypeUnregistered = 0,
  npusimMemoryTypeHost = 1, /* pinned host memory from npusimHostAlloc */
  npusimMemoryTypeDevice = 2,
} npusimMemoryType;

typedef struct {
  npusimMemoryType type;
  int device; /* owning device for device memory, -1 otherwise */
  void* base; /* start of the allocation that contains the pointer */
  size_t size; /* size of that allocation */
} npusimPointerAttributes;

typedef struct {
  char name[64];
  size_t totalGlobalMem;
  int major;
  int minor;
  int multiProcessorCount;
  int maxThreadsPerBlock;
  int warpSize;
  size_t l2CacheSize;
} npusimDeviceProp;

enum { npusimEventDefault = 0, npusimEventDisableTiming = 1 };

/* errors */
const char* npusimGetErrorString(npusimError_t error);
/* NULL when the configuration is valid; else a message naming each invalid variable and
   its value. npusimGetDeviceCount then reports 0 devices (and InvalidConfiguration). */
const char* npusimGetConfigurationError(void);

/* devices (the current device is per thread, like a real driver) */
npusimError_t npusimGetDeviceCount(int* count);
npusimError_t npusimGetDevice(int* device);
npusimError_t npusimSetDevice(int device);
npusimError_t npusimGetDeviceProperties(npusimDeviceProp* prop, int device);
npusimError_t npusimDeviceSynchronize(void);

/* device memory, on the current device; capacity-limited */
npusimError_t npusimMalloc(void** ptr, size_t size);
npusimError_t npusimFree(void* ptr);
/* Sleep (as CUDA's virtual-memory unmap and remap): npusimMemDiscard gives the device the
   capacity of the allocation at ptr back and drops its contents, keeping the address;
   npusimMemRecommit takes the capacity again (MemoryAllocation when the device lacks it),
   after which the allocation reads as zeros. Both are no-ops when already in that state. */
npusimError_t npusimMemDiscard(void* ptr);
npusimError_t npusimMemRecommit(void* ptr);
npusimError_t npusimMemGetInfo(size_t* free_bytes, size_t* total_bytes);
npusimError_t npusimPointerGetAttributes(npusimPointerAttributes* attr, const void* ptr);

/* Device memory shared between processes of one host (as CUDA IPC). An allocation is
   shareable from birth or never: npusimMallocWithFlags(..., npusimMemShareable) backs it with
   a file the peers map, so sharing never copies or moves memory a program may be writing.
   Shareable allocations are at least NPUSIM_IPC_MIN_BYTES, not under NPUSIM_PROTECT_MEMORY,
   and each holds a file descriptor (a bounded number per process). A handle names the
   allocation containing a pointer; another process in the same PID namespace opens it and
   reads and writes the same memory. A forked child gets its own snapshot of every shareable
   allocation, taken at the fork. The owner keeps the allocation alive while others use it;
   a process keeps the mappings it opened cached (bounded) after closing them. */
#define NPUSIM_IPC_MIN_BYTES ((size_t)1 << 20)
#define npusimMemShareable 0x1u
/* NotSupported when a shareable allocation cannot be made (too small, protected memory,
   no descriptors left): the caller may fall back to npusimMalloc */
npusimError_t npusimMallocWithFlags(void** ptr, size_t size, unsigned int flags);
typedef struct {
  unsigned char bytes[96]; /* opaque; may be sent to another process as is */
} npusimIpcMemHandle_t;
/* NotSupported when the allocation was not made shareable; InvalidDevicePointer when ptr is
   not device memory */
npusimError_t npusimIpcGetMemHandle(npusimIpcMemHandle_t* handle, void* ptr);
/* the memory the handle was made from, mapped into this process, for `bytes` bytes from the
   handle's pointer (the span must lie inside that allocation). InvalidResourceHandle when it
   cannot be opened here: a span past the allocation, a freed allocation, an identity that
   does not match the file found, the owner itself (which uses its own pointer); NotSupported
   when the owner is in another PID namespace (its process cannot be named from here) */
npusimError_t npusimIpcOpenMemHandle(void** ptr, npusimIpcMemHandle_t handle, size_t bytes);
npusimError_t npusimIpcCloseMemHandle(void* ptr);

/* pinned host memory */
npusimError_t npusimHostAlloc(void** ptr, size_t size);
npusimError_t npusimFreeHost(void* ptr);

/* copies and fills; the Async forms are ordered on the stream */
npusimError_t npusimMemcpy(void* dst, const void* src, size_t count, npusimMemcpyKind kind);
npusimError_t npusimMemcpyAsync(void* dst, const void* src, size_t count, npusimMemcpyKind kind,
                                npusimStream_t stream);
npusimError_t npusimMemsetAsync(void* dst, int value, size_t count, npusimStream_t stream);

/* The runtime copies on the calling thread. Copies of at least NPUSIM_HOST_COPY_MIN_BYTES go
   to the client's copy function instead when one is set (NULL: none, the default), so they
   can use the host's worker threads: it is called after the copy was validated and counted,
   with non-overlapping ranges, and must have copied all `count` bytes when it returns. */
#define NPUSIM_HOST_COPY_MIN_BYTES ((size_t)1 << 19)
typedef void (*npusimHostCopyFn_t)(void* dst, const void* src, size_t count);
npusimError_t npusimSetHostCopyFn(npusimHostCopyFn_t copy);

/* kernels: fn(arg) runs in stream order on the stream's device */
typedef void (*npusimHostFn_t)(void* arg);
npusimError_t npusimLaunchHostFunc(npusimStream_t stream, npusimHostFn_t fn, void* arg);

/* streams */
npusimError_t npusimDeviceGetStreamPriorityRange(int* least_priority, int* greatest_priority);
npusimError_t npusimStreamCreateWithPriority(npusimStream_t* stream, int device, int priority);
npusimError_t npusimStreamDestroy(npusimStream_t stream);
npusimError_t npusimStreamGetDefault(npusimStream_t* stream, int device);
npusimError_t npusimStreamGetDevice(npusimStream_t stream, int* device);
npusimError_t npusimStreamGetPriority(npusimStream_t stream, int* priority);
npusimError_t npusimStreamQuery(npusimStream_t stream); /* success or NotReady */
npusimError_t npusimStreamSynchronize(npusimStream_t stream);
npusimError_t npusimStreamWaitEvent(npusimStream_t stream, npusimEvent_t event);
/* work items (copies, fills, kernels) ever launched on the stream */
npusimError_t npusimStreamGetLaunchCount(npusimStream_t stream, uint64_t* count);

/* events */
npusimError_t npusimEventCreateWithFlags(npusimEvent_t* event, unsigned flags);
npusimError_t npusimEventDestroy(npusimEvent_t event);
npusimError_t npusimEventRecord(npusimEvent_t event, npusimStream_t stream);
npusimError_t npusimEventQuery(npusimEvent_t event); /* success or NotReady */
npusimError_t npusimEventSynchronize(npusimEvent_t event);
npusimError_t npusimEventElapsedTime(float* ms, npusimEvent_t start, npusimEvent_t end);
npusimError_t npusimEventGetDevice(npusimEvent_t event, int* device);


/* simulated time.
   Every stream carries a simulated clock (ns). Each kernel, copy and fill launched on it
   advances the clock by its cost on the chip (roofline: max(flops / peak of its compute class,
   bytes / memory bandwidth) plus the launch latency; host<->device copies use the host link,
   device-to-device copies and fills the memory bandwidth). Work starts no earlier than the
   host's simulated time on its device, which a host synchronisation (stream, event, device,
   blocking copy) raises to the time it waited for. Events record both clocks;
   npusimStreamWaitEvent makes the stream's clock at least the event's simulated time.
   Execution itself stays synchronous and real: simulated time is bookkeeping. */
typedef enum {
  npusimActivityKernel = 0,
  npusimActivityMemcpy = 1,
  npusimActivityMemset = 2,
  npusimActivityCollective = 3,
} npusimActivityKind;

/* What kind of kernel a launch is: selects its efficiency (npusimSetEfficiency). */
enum {
  npusimOpClassOther = 0,     /* pointwise, reductions, copies, fills: everything else */
  npusimOpClassMatmul = 1,    /* mm, addmm, bmm, baddbmm, linear, convolution */
  npusimOpClassAttention = 2, /* fused scaled-dot-product attention, forward and backward */
  npusimOpClassCount = 3,
};
typedef struct {
  const char* name;  /* e.g. "aten::mm"; NULL allowed */
  double flops;      /* floating-point (or integer) operations; 0 when none */
  double bytes;      /* bytes of device memory read + written */
  int compute_class; /* 0 fp32/other, 1 bf16/fp16, 2 int8 (selects the peak FLOP/s) */
  int op_class;      /* npusimOpClass*: 0 other (the zero-initialised default), 1 matmul, 2 attention */
} npusimKernelCost;

/* as npusimLaunchHostFunc, with the cost that advances the stream's simulated clock (cost may be NULL).
   *cost is read after fn returns, so fn may fill it in (work runs synchronously). */
npusimError_t npusimLaunchKernel(npusimStream_t stream, npusimHostFn_t fn, void* arg, const npusimKernelCost* cost);
/* as npusimLaunchHostFunc, for a copy that fn performs: charged as `bytes` moved in direction
   `kind` (host link or device memory); host_waits=1 for a blocking copy (the host's simulated
   time then reaches its end, as after npusimStreamSynchronize) */
npusimError_t npusimLaunchCopy(npusimStream_t stream, npusimHostFn_t fn, void* arg, npusimMemcpyKind kind,
                               double bytes, int host_waits);
/* A recorded graph replayed as one launch: fn runs every recorded node, in order. Charged as
   real graph hardware runs it: the launch latency once, plus each node's roofline time
   (costs[i], count of them; NULL with count 0 charges the latency alone); one launch counted
   and one activity reported, named `name` (NULL: "npusim::graph_replay"), with the nodes'
   FLOPs and bytes summed. */
npusimError_t npusimLaunchGraph(npusimStream_t stream, npusimHostFn_t fn, void* arg, const char* name,
                                const npusimKernelCost* costs, size_t count);

typedef struct {
  npusimActivityKind kind;
  int device;
  npusimStream_t stream;
  uint64_t stream_id; /* stable per stream */
  const char* name;   /* valid during the callback only */
  double flops;
  double bytes;
  uint64_t sim_start_ns, sim_end_ns;   /* on the stream's simulated clock */
  uint64_t wall_start_ns, wall_end_ns; /* host steady clock */
} npusimActivityRecord;
typedef void (*npusimActivityFn_t)(const npusimActivityRecord* record, void* user);
/* one observer (NULL: none, the default; costless when none): called on the launching thread
   after each kernel, copy, fill or charged collective */
npusimError_t npusimSetActivityCallback(npusimActivityFn_t fn, void* user);
npusimError_t npusimStreamGetSimTime(npusimStream_t stream, uint64_t* ns);
/* 1: npusimEventElapsedTime reports simulated ms; 0 (default): host wall ms */
npusimError_t npusimSetSimulatedTiming(int on);
npusimError_t npusimGetSimulatedTiming(int* on);

/* The chip's timing figures (all > 0 except the latencies, which may be 0). The default is
   the generic NPUSim-1 chip; clients with a chip specification set theirs. */
enum { npusimComputeClassCount = 3 };
typedef struct {
  double peak_flops[npusimComputeClassCount]; /* FLOP/s: fp32/other, bf16/fp16, int8 */
  double memory_bandwidth;                    /* bytes/s of device memory */
  double launch_latency_ns;                   /* added to every kernel */
  double h2d_bandwidth;                       /* bytes/s, host to device */
  double d2h_bandwidth;                       /* bytes/s, device to host */
  double host_link_latency_ns;                /* added to every host<->device copy */
} npusimChipTiming;
npusimError_t npusimSetChipTiming(const npusimChipTiming* timing); /* InvalidValue names no field: check first */
npusimError_t npusimGetChipTiming(npusimChipTiming* timing);
/* The chip's memory per device and name, unless NPUSIM_DEVICE_MEMORY / NPUSIM_DEVICE_NAME set
   them. Meant for start-up: MemoryAllocation when a device already uses more than `bytes`. */
npusimError_t npusimSetChipMemory(size_t bytes, const char* name);

/* Per-op-class efficiency: the fraction of the chip's peak a kind of kernel reaches, rising
   with its size s (FLOPs for compute, bytes for memory):
     eff(s) = max / (1 + (half / s)^exponent)        (max when half == 0)
   A kernel is then charged
     max(flops / (peak_flops[compute_class] * eff_compute(flops)),
         bytes / (memory_bandwidth * eff_memory(bytes))) + launch latency,
   each term 0 when its size is 0; device-to-device copies use memory[npusimOpClassOther].
   With exponent in (0, 1] the charged time never falls as a kernel grows. The default (and
   NULL) is max 1, half 0 everywhere: the plain roofline. */
typedef struct {
  double max;      /* the fraction of the peak large kernels reach, in (0, 1] */
  double half;     /* the size at which the fraction is max / 2, >= 0; 0: max at every size */
  double exponent; /* how steeply the fraction rises with size, in (0, 1] */
} npusimEfficiencyCurve;
typedef struct {
  npusimEfficiencyCurve compute[npusimOpClassCount]; /* of peak_flops, FLOPs as size */
  npusimEfficiencyCurve memory[npusimOpClassCount];  /* of memory_bandwidth, bytes as size */
} npusimEfficiency;
npusimError_t npusimSetEfficiency(const npusimEfficiency* efficiency); /* InvalidValue names no field */
npusimError_t npusimGetEfficiency(npusimEfficiency* efficiency);
/* The simulated time a kernel launch of `cost` is charged on the current chip (NULL: the launch
   latency alone), exactly as npusimLaunchKernel charges it. */
npusimError_t npusimKernelTime(const npusimKernelCost* cost, uint64_t* ns);

/* Cost model switch for clients: when on (or an activity callback is set, or simulated timing
   is on) clients compute each launch's cost, and the runtime keeps per-name totals. When off,
   clocks advance by launch latencies and copy costs only. */
npusimError_t npusimSetCostModel(int on);
int npusimCostModelEnabled(void);

/* Cost-only execution: launched kernels, graphs, copies and fills are charged their cost on
   the simulated clocks but not run (their functions are not called, no byte moves), and
   large device allocations reserve address space without committing memory. Host functions
   (npusimLaunchHostFunc) still run. Capacity accounting is unchanged, so out-of-memory at
   the chip's capacity still happens. Set it before work starts; 0 (default) runs everything. */
npusimError_t npusimSetCostOnly(int on);
int npusimCostOnly(void);

/* A collective (or other work the runtime does not launch) that took `ns` of simulated time,
   charged to the stream as one activity. */
npusimError_t npusimStreamChargeActivity(npusimStream_t stream, npusimActivityKind kind, const char* name,
                                         double bytes, uint64_t ns);

/* Per-name totals since the last reset (while the cost model is on). `name` stays valid until
   npusimResetSimulatedTime. `*count` is the number of entries there are; at most `capacity`
   are written. */
typedef struct {
  const char* name;
  npusimActivityKind kind;
  uint64_t count;
  double flops;
  double bytes;
  uint64_t sim_ns;
} npusimOpStat;
npusimError_t npusimGetOpStats(npusimOpStat* stats, size_t capacity, size_t* count);
/* every stream's and the host's simulated clock back to 0; per-name totals cleared */
npusimError_t npusimResetSimulatedTime(void);

/* protected memory.
   With NPUSIM_PROTECT_MEMORY=1 (read once) device allocations are page-aligned mappings that
   host code cannot read or write except inside a device-access scope, which the runtime
   opens around every launched function, copy and fill. Host code touching device memory
   outside one is reported on stderr (address, allocation, native backtrace) and the process
   ends. The scope is process-wide and counted (pages open on 0 -> 1, close on 1 -> 0), so
   while one thread is inside a scope another thread's direct access goes unnoticed.
   Clients that run device work outside the runtime's launches (a collective engine's
   progress thread, say) open a scope themselves. Begin/End nest; without the mode they cost
   one check. */
npusimError_t npusimDeviceAccessBegin(void);
npusimError_t npusimDeviceAccessEnd(void); /* in the mode, InvalidValue when no scope is open */
int npusimProtectedMemoryEnabled(void);    /* 1 in NPUSIM_PROTECT_MEMORY=1 mode */
uint64_t npusimDeviceAccessOpenings(void); /* 0 -> 1 transitions so far (each costs mprotects) */

#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
/* a device-access scope for the lifetime of a C++ object */
struct npusimDeviceAccessScope {
  npusimDeviceAccessScope() { npusimDeviceAccessBegin(); }
  ~npusimDeviceAccessScope() { npusimDeviceAccessEnd(); }
  npusimDeviceAccessScope(const npusimDeviceAccessScope&) = delete;
  npusimDeviceAccessScope& operator=(const npusimDeviceAccessScope&) = delete;
};
#endif
