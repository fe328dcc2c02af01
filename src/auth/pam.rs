//! Password checks through PAM (OpenPAM on FreeBSD, Linux-PAM on Linux):
//! `pam_authenticate` then `pam_acct_mgmt` (expired or locked accounts
//! fail), with a conversation that answers the password prompt. Blocking:
//! call it from a blocking thread.

use std::ffi::{CStr, CString, c_int, c_void};
use std::ptr;

use iocaged_sys::pam as sys;

/// Why PAM refused, in PAM's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PAM ({service}): {message}")]
pub struct PamError {
    pub service: String,
    pub message: String,
}

struct Credentials {
    user: CString,
    password: CString,
}

/// The conversation: the password for hidden prompts, the user name for
/// echoed ones, nothing for messages.
unsafe extern "C" fn converse(
    num: c_int,
    msgs: *mut *const sys::pam_message,
    resp: *mut *mut sys::pam_response,
    data: *mut c_void,
) -> c_int {
    if num <= 0 || msgs.is_null() || resp.is_null() || data.is_null() {
        return sys::PAM_CONV_ERR as c_int;
    }
    let n = num as usize;
    // SAFETY: PAM frees the array and each `resp` string with free(3), so
    // they are allocated with calloc/strdup. `data` is the Credentials we
    // passed to pam_start, alive for the whole transaction. OpenPAM and
    // Linux-PAM both pass `msgs` as an array of `num` message pointers.
    unsafe {
        let out = libc::calloc(n, std::mem::size_of::<sys::pam_response>()) as *mut sys::pam_response;
        if out.is_null() {
            return sys::PAM_BUF_ERR as c_int;
        }
        let creds = &*(data as *const Credentials);
        for i in 0..n {
            let m = *msgs.add(i);
            let style = if m.is_null() { 0 } else { (*m).msg_style as u32 };
            let answer = match style {
                sys::PAM_PROMPT_ECHO_OFF => libc::strdup(creds.password.as_ptr()),
                sys::PAM_PROMPT_ECHO_ON => libc::strdup(creds.user.as_ptr()),
                _ => ptr::null_mut(),
            };
            (*out.add(i)).resp = answer;
            (*out.add(i)).resp_retcode = 0;
        }
        *resp = out;
    }
    sys::PAM_SUCCESS as c_int
}

/// Checks `user`'s `password` with PAM service `service`.
pub fn authenticate(service: &str, user: &str, password: &str) -> Result<(), PamError> {
    let err = |message: String| PamError { service: service.to_string(), message };
    let c = |s: &str, what: &str| CString::new(s).map_err(|_| err(format!("the {what} contains a NUL byte")));
    let svc = c(service, "service name")?;
    let creds = Box::new(Credentials { user: c(user, "user name")?, password: c(password, "password")? });
    let conv = sys::pam_conv { conv: Some(converse), appdata_ptr: &*creds as *const Credentials as *mut c_void };
    let mut handle: *mut sys::pam_handle_t = ptr::null_mut();
    // SAFETY: valid C strings; `conv` and `creds` outlive the transaction
    // (pam_end below runs before they are dropped).
    let rc = unsafe { sys::pam_start(svc.as_ptr(), creds.user.as_ptr(), &conv, &mut handle) };
    if rc != sys::PAM_SUCCESS as c_int || handle.is_null() {
        return Err(err(format!("pam_start failed ({rc})")));
    }
    let describe = |rc: c_int| {
        // SAFETY: handle is live; pam_strerror returns a static string.
        let s = unsafe { sys::pam_strerror(handle, rc) };
        if s.is_null() { format!("error {rc}") } else { unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned() }
    };
    // SAFETY: live handle from pam_start.
    let mut rc = unsafe { sys::pam_authenticate(handle, 0) };
    if rc == sys::PAM_SUCCESS as c_int {
        // SAFETY: as above.
        rc = unsafe { sys::pam_acct_mgmt(handle, 0) };
    }
    let result = if rc == sys::PAM_SUCCESS as c_int { Ok(()) } else { Err(err(describe(rc))) };
    // SAFETY: ends the transaction started above, exactly once.
    unsafe { sys::pam_end(handle, rc) };
    // Do not leave the password in freed memory.
    let mut bytes = creds.password.into_bytes();
    bytes.fill(0);
    result
}
