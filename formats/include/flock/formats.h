/*
 * flock/formats.h - all of formats/ at once: status values and numeric types,
 * GGUF, safetensors / Hugging Face folders, tokenizer data, the .flock bundle
 * and the CUDA kernel blob. Include the one header a file needs instead
 * (flock/status.h, gguf.h, hf.h, tokdata.h, bundle.h, cuda_blob.h): the
 * public runtime header flock/flock.h includes flock/status.h only.
 */
#ifndef FLOCK_FORMATS_H
#define FLOCK_FORMATS_H

#include "flock/bundle.h"
#include "flock/cuda_blob.h"
#include "flock/gguf.h"
#include "flock/hf.h"
#include "flock/base.h"
#include "flock/tokdata.h"

#endif /* FLOCK_FORMATS_H */
