//! The few host calls a request's path makes, declared here so that every status comes
//! back as a `Result`. The SDK's wrappers panic on any status they do not expect (a
//! header set on a request already answered is status 2) and unwrap UTF-8 in header
//! values, and a panic takes the worker's VM down: no client byte and no late event may
//! reach one. Also here: the `SharedData`, `Slots` and `Facts` seams of the plain-Rust
//! core, implemented over host calls, and the clock.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use crate::limits::{Conflict, Facts, Slot, Slots};
use crate::sync;

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

/// One header of the callout answer being delivered; `None` when absent or unreadable
/// (either way the answer does not count).
pub(super) fn call_response_header(name: &str) -> Option<String> {
    header(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
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

/// Envoy's shared data for the sync loop; the decisions are in `sync`.
pub(super) struct HostShared;

impl sync::SharedData for HostShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// Rate buckets in Envoy's shared data, one key per slot, so every worker draws from
/// the same buckets.
pub(super) struct SharedSlots;

fn slot_key(index: u32) -> String {
    format!("meshauth.rl.{index}")
}

/// The CAS token a write carries to a slot that does not exist yet. Envoy accepts any
/// token for a key it does not have and refuses a stale one for a key it has, so this
/// write creates the slot only if no other worker did in between: an insert-if-absent.
/// (A write without a token would be unconditional and could overwrite a bucket.)
const ABSENT: u32 = u32::MAX;

impl Slots for SharedSlots {
    fn read(&self, index: u32) -> (Option<Slot>, Option<u32>) {
        match hostcalls::get_shared_data(&slot_key(index)) {
            Ok((Some(value), cas)) => (Slot::decode(&value), cas),
            _ => (None, Some(ABSENT)),
        }
    }

    fn write(&self, index: u32, slot: Slot, cas: Option<u32>) -> Result<(), Conflict> {
        hostcalls::set_shared_data(&slot_key(index), Some(&slot.encode()), cas)
            .map_err(|_| Conflict)
    }
}

const PLACEMENT_KEY: &str = "meshauth.rl.placement-key";

/// The secret that keys rate-slot placement, the same for every worker of this Envoy:
/// the first worker to configure draws it and the others read it (an insert-if-absent
/// write, so two first workers still agree on one).
pub(super) fn placement_key() -> Option<[u8; 16]> {
    let read = || match hostcalls::get_shared_data(PLACEMENT_KEY) {
        Ok((Some(v), _)) => <[u8; 16]>::try_from(v.as_slice()).ok(),
        _ => None,
    };
    if let Some(key) = read() {
        return Some(key);
    }
    let mut fresh = [0u8; 16];
    getrandom::getrandom(&mut fresh).ok()?;
    let _ = hostcalls::set_shared_data(PLACEMENT_KEY, Some(&fresh), Some(ABSENT));
    read()
}

/// Request facts for bucket keys: the headers already read, and the client address,
/// fetched only when a policy asks.
pub(super) struct HostFacts<'a> {
    pub headers: &'a [(String, String)],
}

impl Facts for HostFacts<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn client_address(&self) -> Option<String> {
        hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }
}

pub(super) fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(super) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
