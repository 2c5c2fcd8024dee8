//! The API of a locked manager: while autolock keeps its data key sealed, the manager
//! cannot read its log, so nothing runs but this. Every call is refused with 503 and
//! says what to do, except `POST /v1/cluster/unlock`, which checks the key it is
//! given against the sealed data key. Wrong keys are rate limited ([`Backoff`]); the
//! key never appears in a reply or a log line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use shoal_api::wire::UnlockKey as UnlockBody;

use super::{ApiError, Body, ServeError};
use crate::manager::lock::{self, LockError, UnlockKey};

/// The reply to every call but the unlock while locked.
pub const LOCKED_MESSAGE: &str = "this manager is locked: run `shoal cluster unlock`";

/// How long wrong keys make the next try wait: nothing for the first, then 1 s,
/// doubling up to a minute. Pure, so it is tested without clocks.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// How long a try at `now` must still wait (`None`: it may go ahead).
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.until.and_then(|u| u.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// Records a wrong key at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.failures += 1;
        let secs = 1u64 << (self.failures - 1).min(6);
        self.until = Some(now + Duration::from_secs(secs.min(60)));
    }
}

#[derive(Debug)]
struct Gate {
    dir: PathBuf,
    backoff: Mutex<Backoff>,
    opened: tokio::sync::watch::Sender<Option<UnlockKey>>,
}

async fn unlock(State(gate): State<Arc<Gate>>, Body(body): Body<UnlockBody>) -> Result<Json<()>, ApiError> {
    if let Some(wait) = gate.backoff.lock().expect("backoff lock").wait(Instant::now()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many wrong unlock keys: try again in {} s", wait.as_secs().max(1)),
        ));
    }
    let refused = |e: LockError| {
        gate.backoff.lock().expect("backoff lock").failed(Instant::now());
        tracing::warn!("a wrong unlock key was given");
        ApiError::new(StatusCode::FORBIDDEN, "wrong_key", e.to_string())
    };
    let key = UnlockKey::parse(&body.key).map_err(refused)?;
    let dir = gate.dir.clone();
    let tried = key.clone();
    let opened = tokio::task::spawn_blocking(move || lock::load_dek(&dir, Some(&tried)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match opened {
        Ok(_) => {
            tracing::info!("unlocked: the manager starts");
            gate.opened.send_replace(Some(key));
            Ok(Json(()))
        }
        Err(e @ LockError::WrongKey) => Err(refused(e)),
        Err(e) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", shoal_api::report::chain(&e)))
        }
    }
}

async fn locked() -> axum::response::Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "locked", LOCKED_MESSAGE).into_response()
}

/// The router of a locked manager whose data dir is `dir`; `opened` is told the key
/// that unlocked it.
fn router(dir: &Path, opened: tokio::sync::watch::Sender<Option<UnlockKey>>) -> Router {
    let gate = Arc::new(Gate { dir: dir.to_owned(), backoff: Mutex::default(), opened });
    Router::new().route("/v1/cluster/unlock", axum::routing::post(unlock)).fallback(locked).with_state(gate)
}

/// Serves the locked API on the unix socket `socket` for the manager whose data dir
/// is `dir`, until a caller gives the key that opens its data key; returns that key
/// (the socket is closed and removed by then).
pub async fn serve_until_unlocked(socket: &Path, dir: &Path) -> Result<UnlockKey, ServeError> {
    let listener = super::bind_socket(socket)?;
    let (opened, mut told) = tokio::sync::watch::channel(None);
    let app = router(dir, opened);
    let mut stop = told.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(Option::is_some).await;
            })
            .await;
    });
    let key = told.wait_for(Option::is_some).await.map(|k| k.clone()).ok().flatten();
    let key = key.ok_or_else(|| ServeError::Listen {
        what: socket.display().to_string(),
        source: std::io::Error::other("the locked API stopped"),
    });
    // The unlock reply is on its way; idle connections close at once.
    let abort = server.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), server).await.is_err() {
        abort.abort();
    }
    let _ = std::fs::remove_file(socket);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_keys_wait_longer_and_longer() {
        let t = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.wait(t), None, "the first try goes ahead");
        b.failed(t);
        assert_eq!(b.wait(t), Some(Duration::from_secs(1)));
        assert_eq!(b.wait(t + Duration::from_secs(1)), None);
        b.failed(t);
        assert_eq!(b.wait(t), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            b.failed(t);
        }
        assert_eq!(b.wait(t), Some(Duration::from_secs(60)), "capped at a minute");
    }
}
