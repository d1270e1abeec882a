//! GPU execution providers (CUDA, TensorRT), registered through the ONNX Runtime C API.
//!
//! `ort`'s own `ep::CUDA`/`ep::TensorRT` types sit behind its `cuda`/`tensorrt` cargo features, which this
//! crate does not enable (they add nothing else with `load-dynamic`: `ort-sys`'s `cuda = []`). Enabling
//! them would let this file shrink to `ep::CUDA::default().with_device_id(id).build().error_on_failure()`;
//! until then the same three C calls `ort` makes are made here. Availability is asked through `ort`'s safe
//! [`ExecutionProvider::is_available`].

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use ort::AsPointer;
use ort::ep::ExecutionProvider as _;
use ort::session::builder::SessionBuilder;

use super::session::ExecutionProvider;

/// ONNX Runtime's name for the CUDA provider; used for the availability query.
struct Cuda;

impl ort::ep::ExecutionProvider for Cuda {
    const NAME: &'static str = "CUDAExecutionProvider";

    fn register(&self, _builder: &mut SessionBuilder) -> ort::Result<()> {
        Err(ort::Error::new("registered through infer::ep::append"))
    }
}

/// ONNX Runtime's name for the TensorRT provider; used for the availability query.
struct TensorRt;

impl ort::ep::ExecutionProvider for TensorRt {
    const NAME: &'static str = "TensorrtExecutionProvider";

    fn register(&self, _builder: &mut SessionBuilder) -> ort::Result<()> {
        Err(ort::Error::new("registered through infer::ep::append"))
    }
}

/// Whether the loaded ONNX Runtime library was built with `provider` (CPU always is).
pub(crate) fn compiled_in(provider: ExecutionProvider) -> Result<bool, String> {
    let r = match provider {
        ExecutionProvider::Cpu => return Ok(true),
        ExecutionProvider::Cuda => Cuda::is_available(),
        ExecutionProvider::TensorRt => TensorRt::is_available(),
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
    match provider {
        ExecutionProvider::Cpu => Ok(()),
        ExecutionProvider::Cuda => append_cuda(builder, device_id),
        ExecutionProvider::TensorRt => {
            append_tensorrt(builder, device_id)?;
            append_cuda(builder, device_id)
        }
    }
}

/// Turns an `OrtStatus` into `Err(message)`, releasing it.
fn check(status: ort::sys::OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: `status` is a non-null status returned by the C API; its message lives until ReleaseStatus.
    let message = unsafe {
        let msg = (api.GetErrorMessage)(status.0);
        let s = if msg.is_null() {
            "unknown ONNX Runtime error".to_owned()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        };
        (api.ReleaseStatus)(status.0);
        s
    };
    Err(message)
}

fn device_options(device_id: i32) -> Result<(CString, CString), String> {
    let key = CString::new("device_id").map_err(|e| e.to_string())?;
    let value = CString::new(device_id.to_string()).map_err(|e| e.to_string())?;
    Ok((key, value))
}

fn append_cuda(builder: &mut SessionBuilder, device_id: i32) -> Result<(), String> {
    let api = ort::api();
    let (key, value) = device_options(device_id)?;
    let keys: [*const c_char; 1] = [key.as_ptr()];
    let values: [*const c_char; 1] = [value.as_ptr()];
    let mut options: *mut ort::sys::OrtCUDAProviderOptionsV2 = ptr::null_mut();
    // SAFETY: the calls follow the C API contract: create → update → append → release, with `options`
    // non-null after a successful create, key/value arrays of length 1 that outlive the call, and the
    // session-options pointer owned by `builder`, which outlives the call.
    unsafe {
        check((api.CreateCUDAProviderOptions)(&mut options))?;
        let result = check((api.UpdateCUDAProviderOptions)(
            options,
            keys.as_ptr(),
            values.as_ptr(),
            1,
        ))
        .and_then(|()| {
            check((api.SessionOptionsAppendExecutionProvider_CUDA_V2)(
                builder.ptr_mut(),
                options,
            ))
        });
        (api.ReleaseCUDAProviderOptions)(options);
        result
    }
}

fn append_tensorrt(builder: &mut SessionBuilder, device_id: i32) -> Result<(), String> {
    let api = ort::api();
    let (key, value) = device_options(device_id)?;
    let keys: [*const c_char; 1] = [key.as_ptr()];
    let values: [*const c_char; 1] = [value.as_ptr()];
    let mut options: *mut ort::sys::OrtTensorRTProviderOptionsV2 = ptr::null_mut();
    // SAFETY: as in `append_cuda`.
    unsafe {
        check((api.CreateTensorRTProviderOptions)(&mut options))?;
        let result = check((api.UpdateTensorRTProviderOptions)(
            options,
            keys.as_ptr(),
            values.as_ptr(),
            1,
        ))
        .and_then(|()| {
            check((api.SessionOptionsAppendExecutionProvider_TensorRT_V2)(
                builder.ptr_mut(),
                options,
            ))
        });
        (api.ReleaseTensorRTProviderOptions)(options);
        result
    }
}
