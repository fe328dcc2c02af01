//! Password checks through PAM (OpenPAM on FreeBSD, Linux-PAM on Linux):
//! `pam_authenticate` then `pam_acct_mgmt` (expired or locked accounts
//! fail), with a conversation that answers the password prompt. Blocking:
//! call it from a blocking thread.
//!
//! - The client's address is the transaction's `PAM_RHOST`, so that
//!   host-based account rules apply (FreeBSD: pam_login_access(8) and
//!   login.conf's `host.allow`/`host.deny` in pam_unix(8)).
//! - Both calls get `PAM_DISALLOW_NULL_AUTHTOK`: an account without a
//!   password never gets in, even where the service's pam_unix has `nullok`
//!   (FreeBSD's pam_unix then succeeds without asking for a password, and
//!   its account check refuses such an account only with this flag).
//! - On FreeBSD, transactions take turns ([`SERIALISED`]).

use std::ffi::{CStr, CString, c_int, c_void};
use std::net::IpAddr;
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use iocaged_sys::pam as sys;

/// Whether PAM transactions take turns, one at a time in the process.
///
/// FreeBSD: yes. pam_unix checks the password with crypt(3), whose result
/// lives in one static buffer per process in FreeBSD's libcrypt
/// (lib/libcrypt/crypt.c), and looks the user up with getpwnam(3), which
/// has one too; two logins at once could compare one user's password with
/// the other's hash. Linux: no. Linux-PAM's pam_unix uses crypt_r and
/// getpwnam_r, and services there often delay failed attempts inside
/// pam_authenticate (pam_faildelay in Debian's `login`): a global turn
/// would let one failed login hold up everybody's for seconds.
pub const SERIALISED: bool = cfg!(target_os = "freebsd");

/// The turn taken around a whole transaction when [`SERIALISED`].
static TURN: Mutex<()> = Mutex::new(());

/// Waits for this transaction's turn where transactions take turns; the
/// turn lasts as long as the guard.
fn take_turn() -> Option<MutexGuard<'static, ()>> {
    SERIALISED.then(|| TURN.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Flags for `pam_authenticate` and `pam_acct_mgmt`.
pub const FLAGS: c_int = sys::PAM_DISALLOW_NULL_AUTHTOK;

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
        return sys::PAM_CONV_ERR;
    }
    let n = num as usize;
    // SAFETY: PAM frees the array and each `resp` string with free(3), so
    // they are allocated with calloc/strdup. `data` is the Credentials we
    // passed to pam_start, alive for the whole transaction. OpenPAM and
    // Linux-PAM both pass `msgs` as an array of `num` message pointers.
    unsafe {
        let out = libc::calloc(n, std::mem::size_of::<sys::pam_response>()) as *mut sys::pam_response;
        if out.is_null() {
            return sys::PAM_BUF_ERR;
        }
        let creds = &*(data as *const Credentials);
        for i in 0..n {
            let m = *msgs.add(i);
            let style = if m.is_null() { 0 } else { (*m).msg_style };
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
    sys::PAM_SUCCESS
}

/// Checks `user`'s `password` with PAM service `service`, for a client at
/// `peer` (the transaction's `PAM_RHOST`).
pub fn authenticate(service: &str, user: &str, password: &str, peer: IpAddr) -> Result<(), PamError> {
    transaction(service, user, Some(password), peer)
}

/// Checks only that `user`'s account may log in now (`pam_acct_mgmt`:
/// not locked, not expired), for a login proven otherwise (a client key).
pub fn account(service: &str, user: &str, peer: IpAddr) -> Result<(), PamError> {
    transaction(service, user, None, peer)
}

/// `pam_authenticate` when there is a password, then `pam_acct_mgmt`.
fn transaction(service: &str, user: &str, password: Option<&str>, peer: IpAddr) -> Result<(), PamError> {
    let err = |message: String| PamError { service: service.to_string(), message };
    let c = |s: &str, what: &str| CString::new(s).map_err(|_| err(format!("the {what} contains a NUL byte")));
    let svc = c(service, "service name")?;
    let rhost = c(&peer.to_string(), "peer address")?;
    let creds = Box::new(Credentials { user: c(user, "user name")?, password: c(password.unwrap_or(""), "password")? });
    let conv = sys::pam_conv { conv: Some(converse), appdata_ptr: &*creds as *const Credentials as *mut c_void };
    // Held until pam_end has returned (dropped at the end of the function).
    let _turn = take_turn();
    let mut handle: *mut sys::pam_handle_t = ptr::null_mut();
    // SAFETY: valid C strings; `conv` and `creds` outlive the transaction
    // (pam_end below runs before they are dropped).
    let rc = unsafe { sys::pam_start(svc.as_ptr(), creds.user.as_ptr(), &conv, &mut handle) };
    if rc != sys::PAM_SUCCESS || handle.is_null() {
        return Err(err(format!("pam_start failed ({rc})")));
    }
    let describe = |rc: c_int| {
        // SAFETY: handle is live; pam_strerror returns a static string.
        let s = unsafe { sys::pam_strerror(handle, rc) };
        if s.is_null() {
            format!("error {rc}")
        } else {
            // SAFETY: non-null, a NUL-terminated static string.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: live handle; PAM copies the string (OpenPAM and Linux-PAM
    // both strdup string items), so `rhost` need not outlive the call.
    let mut rc = unsafe { sys::pam_set_item(handle, sys::PAM_RHOST, rhost.as_ptr().cast()) };
    if rc == sys::PAM_SUCCESS && password.is_some() {
        // SAFETY: live handle from pam_start.
        rc = unsafe { sys::pam_authenticate(handle, FLAGS) };
    }
    if rc == sys::PAM_SUCCESS {
        // SAFETY: as above.
        rc = unsafe { sys::pam_acct_mgmt(handle, FLAGS) };
    }
    let result = if rc == sys::PAM_SUCCESS { Ok(()) } else { Err(err(describe(rc))) };
    // SAFETY: ends the transaction started above, exactly once.
    unsafe { sys::pam_end(handle, rc) };
    // Do not leave the password in freed memory.
    let mut bytes = creds.password.into_bytes();
    bytes.fill(0);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_passwords_are_refused_by_flag() {
        assert_ne!(FLAGS & sys::PAM_DISALLOW_NULL_AUTHTOK, 0);
        // Both PAMs define it as 1 (OpenPAM's pam_constants.h, Linux-PAM's
        // _pam_types.h).
        assert_eq!(sys::PAM_DISALLOW_NULL_AUTHTOK, 1);
    }

    #[test]
    fn the_rhost_item_is_the_same_number_in_both_pams() {
        assert_eq!(sys::PAM_RHOST, 4);
    }

    #[test]
    fn transactions_take_turns_on_freebsd_only() {
        let turn = take_turn();
        assert_eq!(turn.is_some(), cfg!(target_os = "freebsd"));
        if turn.is_some() {
            assert!(TURN.try_lock().is_err(), "a second transaction waits for the first");
        }
        drop(turn);
        assert!(TURN.try_lock().is_ok());
    }

    fn message(style: c_int) -> sys::pam_message {
        sys::pam_message { msg_style: style, msg: c"prompt".as_ptr() as _ }
    }

    #[test]
    fn the_conversation_answers_prompts_and_not_messages() {
        let creds = Credentials { user: c"alice".into(), password: c"s3cret".into() };
        let msgs = [
            message(sys::PAM_PROMPT_ECHO_OFF),
            message(sys::PAM_PROMPT_ECHO_ON),
            message(sys::PAM_TEXT_INFO),
            message(sys::PAM_ERROR_MSG),
        ];
        let mut ptrs: Vec<*const sys::pam_message> = msgs.iter().map(|m| m as *const _).collect();
        let mut resp: *mut sys::pam_response = ptr::null_mut();
        // SAFETY: four valid messages; `creds` outlives the call.
        let rc = unsafe { converse(4, ptrs.as_mut_ptr(), &mut resp, &creds as *const Credentials as *mut c_void) };
        assert_eq!(rc, sys::PAM_SUCCESS);
        assert!(!resp.is_null());
        // SAFETY: `converse` returned an array of four responses made with
        // calloc/strdup; freed here as PAM would.
        unsafe {
            let answer = |i: usize| {
                let r = (*resp.add(i)).resp;
                if r.is_null() { None } else { Some(CStr::from_ptr(r).to_str().unwrap().to_string()) }
            };
            assert_eq!(answer(0).as_deref(), Some("s3cret"));
            assert_eq!(answer(1).as_deref(), Some("alice"));
            assert_eq!(answer(2), None);
            assert_eq!(answer(3), None);
            for i in 0..4 {
                libc::free((*resp.add(i)).resp.cast());
            }
            libc::free(resp.cast());
        }
    }

    #[test]
    fn the_conversation_refuses_nonsense() {
        let mut resp: *mut sys::pam_response = ptr::null_mut();
        // SAFETY: null messages are refused before anything is read.
        let rc = unsafe { converse(0, ptr::null_mut(), &mut resp, ptr::null_mut()) };
        assert_eq!(rc, sys::PAM_CONV_ERR);
        assert!(resp.is_null());
    }

    #[test]
    fn nul_bytes_are_refused_before_pam_is_called() {
        let e = authenticate("login", "ali\0ce", "x", IpAddr::from([127, 0, 0, 1])).unwrap_err();
        assert!(e.message.contains("user name"), "{e}");
    }
}
