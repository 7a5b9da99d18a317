//! The few host calls a request's path makes, declared here so that every status comes
//! back as a `Result`. The SDK's wrappers panic on any status they do not expect (a
//! header set on a request already answered is status 2) and unwrap UTF-8 in header
//! values, and a panic takes the worker's VM down: no client byte and no late event may
//! reach one.

use proxy_wasm::types::MapType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HostError(#[allow(dead_code)] u32);

// Status 0 is `Ok`; 1 (`NotFound`) is meaningful for single-value lookups.
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
// `BufferType::HttpCallResponseBody`.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
// `StreamType::HttpRequest`.
const HTTP_REQUEST_STREAM: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn status(code: u32) -> Result<(), HostError> {
    if code == OK {
        Ok(())
    } else {
        Err(HostError(code))
    }
}

/// Takes ownership of a buffer the host allocated through the module's allocator.
///
/// # Safety
/// `data`/`size` must come from a host call that just returned `Ok` with them.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// Every header of a map, values decoded lossily.
pub(super) fn headers(map: MapType) -> Result<Vec<(String, String)>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: the host writes a buffer it allocated with our allocator, or nothing.
    let bytes = unsafe {
        status(proxy_get_header_map_pairs(map as u32, &mut data, &mut size))?;
        owned(data, size)
    };
    Ok(crate::header_map::decode(&bytes))
}

/// One header's value, decoded lossily; `None` when absent.
pub(super) fn header(map: MapType, name: &str) -> Result<Option<String>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: as in `headers`.
    unsafe {
        let code =
            proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size);
        if code == NOT_FOUND {
            return Ok(None);
        }
        status(code)?;
        Ok(Some(
            String::from_utf8_lossy(&owned(data, size)).into_owned(),
        ))
    }
}

/// Sets (replacing every copy) or, with `None`, removes a header.
pub(super) fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live slices.
    status(unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    })
}

pub(super) fn add_header(map: MapType, name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live slices.
    status(unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub(super) fn resume_request() -> Result<(), HostError> {
    // SAFETY: no pointers.
    status(unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) })
}

pub(super) fn send_response(
    code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), HostError> {
    let map = crate::header_map::encode(headers);
    // SAFETY: pointers and lengths of live buffers; no details string, no gRPC status.
    status(unsafe {
        proxy_send_local_response(
            code,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// The body of the callout answer being delivered (up to `size` bytes).
pub(super) fn call_response_body(size: usize) -> Result<Vec<u8>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: as in `headers`.
    unsafe {
        let code = proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, size, &mut data, &mut len);
        if code == NOT_FOUND {
            return Ok(Vec::new());
        }
        status(code)?;
        Ok(owned(data, len))
    }
}
