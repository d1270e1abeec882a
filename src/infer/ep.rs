//! GPU execution providers (CUDA, TensorRT) through `ort`'s own provider types (its `cuda`/`tensorrt`
//! cargo features, which add no code to the build beyond these types with `load-dynamic`). Whether the
//! loaded ONNX Runtime library has a provider is asked through [`ExecutionProvider::is_available`].

use ort::ep::{CUDA, ExecutionProvider as _, TensorRT};
use ort::session::builder::SessionBuilder;

use super::session::ExecutionProvider;

/// Whether the loaded ONNX Runtime library was built with `provider` (CPU always is).
pub(crate) fn compiled_in(provider: ExecutionProvider) -> Result<bool, String> {
    let r = match provider {
        ExecutionProvider::Cpu => return Ok(true),
        ExecutionProvider::Cuda => CUDA::is_available(),
        ExecutionProvider::TensorRt => TensorRT::is_available(),
    };
    r.map_err(|e| e.to_string())
}

/// Appends `provider` (TensorRT also appends CUDA behind it, for the nodes TensorRT does not take) to the
/// session options. The error is ONNX Runtime's message.
pub(crate) fn append(
    builder: &mut SessionBuilder,
    provider: ExecutionProvider,
    device_id: i32,
) -> Result<(), String> {
    let r = match provider {
        ExecutionProvider::Cpu => Ok(()),
        ExecutionProvider::Cuda => CUDA::default().with_device_id(device_id).register(builder),
        ExecutionProvider::TensorRt => TensorRT::default()
            .with_device_id(device_id)
            .register(builder)
            .and_then(|()| CUDA::default().with_device_id(device_id).register(builder)),
    };
    r.map_err(|e| e.to_string())
}
