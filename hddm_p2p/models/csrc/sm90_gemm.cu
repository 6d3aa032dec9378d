// Hopper (sm_90a) GEMMs for a DiT block's linear layers, with the epilogues cuBLASLt runs slowly.
//
// Built by hddm_p2p/models/sm90_gemm.py: one translation unit per (epilogue, tile config), selected with
// -DHDDM_EPI=<n> -DHDDM_CFG=<n> and the config's tile (-DHDDM_TILE_M/_N, -DHDDM_CLUSTER_M/_N, -DHDDM_SCHEDULE,
// from sm90_gemm.CONFIGS), each exporting one C function
//     int hddm_sm90_<epi>_<cfg>(const HddmGemmArgs*)
// so the Python side calls it through ctypes on torch's current stream.
//
// Every product is PyTorch's linear layer in row-major terms, y (M, N) = x (M, K) · W (N, K)ᵀ, computed as
// its transpose yᵀ (N, M) = W · xᵀ in column-major terms, so that the bias runs along CUTLASS's rows:
//   EPI 0 "bias":           y = x Wᵀ + b
//   EPI 1 "gelu_bias":      y = gelu_tanh(x Wᵀ + b)
//   EPI 2 "gelu_aux_bias":  y = gelu_tanh(x Wᵀ + b), aux = x Wᵀ + b  (the pre-activation, for the backward)
//   EPI 3 "dgelu":          y = (x · W) ⊙ gelu_tanh'(aux)  with W (K, N) row-major: fc2's input gradient
//   EPI 4 "gated_residual": y = residual + gate ⊙ (x Wᵀ + b), gate one (n,) row per sample: the rows of x
//                           come in `batch` samples of m / batch tokens, run as a batched GEMM (W shared), the
//                           gate as a per-row scale with a batch stride and gate ⊙ b passed as `bias` (batch, n)
// All tensors bf16 and contiguous, fp32 accumulation, fp32 epilogue math; tanh is tanh.approx.f32.

#include <cstdint>
#include <cuda_runtime.h>

#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"

using namespace cute;

struct HddmGemmArgs {
  int64_t m, n, k;        // y is (m, n); x is (m, k)
  const void* x;          // (m, k) bf16
  const void* w;          // (n, k) bf16, or (k, n) for EPI 3
  const void* bias;       // (n,) bf16 or null
  void* y;                // (m, n) bf16
  void* aux;              // (m, n) bf16: written by EPI 2, read by EPI 3
  void* workspace;
  int64_t workspace_bytes;
  void* stream;           // cudaStream_t
  int sm_count;           // 0: let CUTLASS query it
  int64_t batch;          // EPI 4: samples (m is a multiple)
  const void* gate;       // EPI 4: (batch, n) bf16, rows gate_stride elements apart
  int64_t gate_stride;
  const void* residual;   // EPI 4: (m, n) bf16
};

namespace {

using bf16 = cutlass::bfloat16_t;

// One tile config per translation unit: (CTA tile M, N; cluster M, N; schedule), K tile 64, from the -D flags
// sm90_gemm.Tile.defines gives. HDDM_TILE expands its arguments before HDDM_TILE_ pastes the schedule's name.
#if !defined(HDDM_TILE_M) || !defined(HDDM_TILE_N) || !defined(HDDM_CLUSTER_M) || !defined(HDDM_CLUSTER_N) || \
    !defined(HDDM_SCHEDULE)
#error "define the tile config (HDDM_TILE_M/_N, HDDM_CLUSTER_M/_N, HDDM_SCHEDULE): see sm90_gemm.Tile"
#endif
#define HDDM_EPI_SCHEDULE_Pingpong cutlass::epilogue::TmaWarpSpecialized
#define HDDM_EPI_SCHEDULE_Cooperative cutlass::epilogue::TmaWarpSpecializedCooperative
#define HDDM_TILE_(M, N, CM, CN, KIND)                                 \
  using TileShape = Shape<Int<M>, Int<N>, _64>;                        \
  using ClusterShape = Shape<Int<CM>, Int<CN>, _1>;                    \
  using KernelSchedule = cutlass::gemm::KernelTmaWarpSpecialized##KIND; \
  using EpiSchedule = HDDM_EPI_SCHEDULE_##KIND;
#define HDDM_TILE(M, N, CM, CN, KIND) HDDM_TILE_(M, N, CM, CN, KIND)

HDDM_TILE(HDDM_TILE_M, HDDM_TILE_N, HDDM_CLUSTER_M, HDDM_CLUSTER_N, HDDM_SCHEDULE)

using ColMajor = cutlass::layout::ColumnMajor;
using RowMajor = cutlass::layout::RowMajor;
// CUTLASS's A is W: (n, k) row-major for EPI 0-2 (element (i, l) at i*k + l); for EPI 3 the (k, n)
// row-major weight read as (n, k) column-major.
#if HDDM_EPI == 3
using LayoutA = ColMajor;
#else
using LayoutA = RowMajor;
#endif
using LayoutB = ColMajor;  // xᵀ (k, m) column-major = x (m, k) row-major
using LayoutD = ColMajor;  // yᵀ (n, m) column-major = y (m, n) row-major

#if HDDM_EPI == 0
using Fusion = cutlass::epilogue::fusion::LinCombPerRowBias<bf16, float, bf16, bf16>;
#elif HDDM_EPI == 1
using Fusion = cutlass::epilogue::fusion::LinCombPerRowBiasEltAct<
    cutlass::epilogue::thread::GELU_taylor, bf16, float, bf16, bf16>;
#elif HDDM_EPI == 2
using Fusion = cutlass::epilogue::fusion::LinCombPerRowBiasEltActAux<
    LayoutD, cutlass::epilogue::thread::GELU_taylor, bf16, float, bf16, bf16, bf16>;
#elif HDDM_EPI == 3
using Fusion = cutlass::epilogue::fusion::LinCombDeEltAct<
    LayoutD, cutlass::epilogue::thread::dGELU, bf16, float, bf16, bf16>;
#elif HDDM_EPI == 4
using Fusion = cutlass::epilogue::fusion::PerRowLinCombPerRowBiasEltAct<
    cutlass::epilogue::thread::Identity, bf16, float, bf16, bf16, bf16>;
#else
#error "unknown HDDM_EPI"
#endif

#if HDDM_EPI == 4
using ElementC = bf16;  // the residual
#else
using ElementC = void;  // no C operand
#endif

using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
    cutlass::epilogue::collective::EpilogueTileAuto, float, float,
    ElementC, LayoutD, 8,
    bf16, LayoutD, 8,
    EpiSchedule, Fusion>::CollectiveOp;

using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
    bf16, LayoutA, 8, bf16, LayoutB, 8, float, TileShape, ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<
        static_cast<int>(sizeof(typename CollectiveEpilogue::SharedStorage))>,
    KernelSchedule>::CollectiveOp;

using Kernel = cutlass::gemm::kernel::GemmUniversal<
    Shape<int, int, int, int>, CollectiveMainloop, CollectiveEpilogue, cutlass::gemm::PersistentScheduler>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

typename Gemm::Arguments make_arguments(const HddmGemmArgs& a) {
#if HDDM_EPI == 4
  const int L = static_cast<int>(a.batch);
#else
  const int L = 1;
#endif
  const int M = static_cast<int>(a.n), N = static_cast<int>(a.m / L), K = static_cast<int>(a.k);
  auto stride_a = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, {M, K, 1});
  auto stride_b = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, {N, K, L});
  auto stride_d = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, {M, N, L});
  get<2>(stride_a) = 0;  // one weight for every sample
  const void* c_ptr = nullptr;
#if HDDM_EPI == 4
  c_ptr = a.residual;
#endif
  typename Gemm::Arguments args{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {M, N, K, L},
      {static_cast<const bf16*>(a.w), stride_a, static_cast<const bf16*>(a.x), stride_b},
      {{}, static_cast<const bf16*>(c_ptr), stride_d, static_cast<bf16*>(a.y), stride_d}};
  auto& fusion = args.epilogue.thread;
#if HDDM_EPI == 4
  fusion.alpha_ptr = static_cast<const bf16*>(a.gate);
  fusion.dAlpha = {true, _0{}, a.gate_stride};
  fusion.beta = bf16(1.0f);
  fusion.bias_ptr = static_cast<const bf16*>(a.bias);
  fusion.dBias = {_1{}, _0{}, static_cast<int64_t>(M)};
#else
  fusion.alpha = 1.0f;
  fusion.beta = 0.0f;
#endif
#if HDDM_EPI <= 2
  fusion.bias_ptr = static_cast<const bf16*>(a.bias);
#endif
#if HDDM_EPI == 2 || HDDM_EPI == 3
  fusion.aux_ptr = static_cast<bf16*>(a.aux);
  fusion.dAux = stride_d;
#endif
  int device = 0;
  cudaGetDevice(&device);
  args.hw_info.device_id = device;
  args.hw_info.sm_count = a.sm_count;
  return args;
}

}  // namespace

#define HDDM_CAT_(a, b, c) hddm_sm90_epi##a##_cfg##b##c
#define HDDM_CAT(a, b, c) HDDM_CAT_(a, b, c)

// Returns 0 on success; 1: shape or alignment refused; 2: workspace too small; 3: launch failed.
extern "C" int HDDM_CAT(HDDM_EPI, HDDM_CFG, )(const HddmGemmArgs* a) {
  Gemm gemm;
  auto args = make_arguments(*a);
  if (gemm.can_implement(args) != cutlass::Status::kSuccess) return 1;
  if (static_cast<int64_t>(Gemm::get_workspace_size(args)) > a->workspace_bytes) return 2;
  auto stream = static_cast<cudaStream_t>(a->stream);
  if (gemm.initialize(args, a->workspace, stream) != cutlass::Status::kSuccess) return 3;
  return gemm.run(stream) == cutlass::Status::kSuccess ? 0 : 3;
}

// How many workspace bytes the call needs (0 for these non-split persistent kernels, asked anyway).
extern "C" int64_t HDDM_CAT(HDDM_EPI, HDDM_CFG, _workspace)(const HddmGemmArgs* a) {
  return static_cast<int64_t>(Gemm::get_workspace_size(make_arguments(*a)));
}
