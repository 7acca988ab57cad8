// all_kernels.cu - the one compilation unit of the engine: the pycuda backend builds it into
// one cubin, the emulator into one shared library, scripts/compile_check.py into one PTX per
// architecture. Add new kernel sources here.
#include "gemm.cu"
#include "depthwise.cu"
#include "conv_direct.cu"
#include "im2col.cu"
#include "maxpool.cu"
#include "reorg.cu"
#include "copy.cu"
#include "region.cu"
#include "preprocess.cu"
