//! `POST /v1/tasks/{id}/exec`: a command in a running task's container, wherever it
//! runs. The request upgrades the connection (`Upgrade: shoal-exec`) to the frames
//! of [`shoal_api::exec`]; the manager relays them to the task's node through the
//! leader's dispatcher. A write: the read-only token cannot exec.

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use shoal_api::exec::{Frame, PROTOCOL};
use shoal_api::task::TaskState;
use shoal_api::wire::ErrorBody;
use shoal_proto::dispatcher as pb;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use super::{Api, ApiError};
use crate::dispatcher::exec::frame;
use crate::plan::{PlanError, find};
use crate::store::{Kind, Object};

/// Starts an exec in a task's container.
#[utoipa::path(post, path = "/v1/tasks/{id}/exec", tag = "tasks",
    params(("id" = String, Path, description = "Id or unique id prefix")),
    responses((status = 101, description = "Switched to `shoal-exec` frames: the client sends an `ExecStart` \
        frame first, then input and resizes; the manager sends output, then the exit code or an error"),
              (status = 400, description = "Not an upgrade to `shoal-exec`", body = ErrorBody),
              (status = 404, description = "No such task", body = ErrorBody),
              (status = 409, description = "The task is not running", body = ErrorBody)))]
pub(super) async fn task_exec(
    State(api): State<Api>,
    Path(key): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case(PROTOCOL)) {
        return Err(ApiError::bad_request(format!(
            "an exec switches protocols: send `Connection: Upgrade` and `Upgrade: {PROTOCOL}`"
        )));
    }
    let task = api
        .read(false, |s| match find(s, Kind::Task, &key)? {
            Object::Task(t) => Ok::<_, PlanError>(t.clone()),
            _ => unreachable!("the task index holds tasks"),
        })
        .await??;
    if task.status.state != TaskState::Running || task.node_id.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!(
                "task {} is {}: only a running task's container can run commands",
                task.id, task.status.state
            ),
        ));
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => relay(api, task.id, hyper_util::rt::TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "an exec's connection did not switch"),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, PROTOCOL)
        .body(axum::body::Body::empty())
        .expect("a valid response"))
}

/// Relays one exec between the client's connection and the task's node.
async fn relay(api: Api, task_id: String, io: impl AsyncRead + AsyncWrite + Send + 'static) {
    use pb::exec_frame::Item;
    let (mut r, mut w) = tokio::io::split(io);
    let start = match Frame::read(&mut r).await {
        Ok(Some(Frame::Start(s))) if !s.cmd.is_empty() => s,
        Ok(Some(Frame::Start(_))) => {
            return send_last(&mut w, Frame::Error("no command to run".into())).await;
        }
        _ => return send_last(&mut w, Frame::Error("an exec starts with what to run".into())).await,
    };
    let open = pb::ExecOpen {
        exec_id: String::new(),
        task_id,
        args: start.cmd,
        user: start.user.unwrap_or_default(),
        workdir: start.workdir.unwrap_or_default(),
        env: start.env,
        tty: start.tty,
        rows: start.rows.into(),
        cols: start.cols.into(),
        stdin: start.stdin,
    };
    let channels = match api.dispatcher.exec(open).await {
        Ok(c) => c,
        Err(e) => return send_last(&mut w, Frame::Error(shoal_api::report::chain(&e))).await,
    };
    let input = channels.input;
    let mut from_client = tokio::spawn(async move {
        while let Ok(Some(f)) = Frame::read(&mut r).await {
            let item = match f {
                Frame::Stdin(b) => Item::Stdin(b),
                Frame::StdinClosed => Item::StdinClosed(true),
                Frame::Resize(rows, cols) => {
                    Item::Resize(pb::WindowSize { rows: rows.into(), cols: cols.into() })
                }
                _ => continue,
            };
            // Once the exec has ended this fails; reading on until the client
            // closes keeps "the client went away" meaning just that.
            let _ = input.send(frame(item)).await;
        }
    });
    let mut output = channels.output;
    loop {
        let f = tokio::select! {
            f = output.recv() => f,
            // The client's connection ended: it went away; dropping the exec hangs up.
            _ = &mut from_client => return,
        };
        let Some(f) = f else { break };
        let out = match f.item {
            Some(Item::Stdout(b)) => Frame::Stdout(b),
            Some(Item::Stderr(b)) => Frame::Stderr(b),
            Some(Item::ExitCode(c)) => Frame::Exit(c),
            Some(Item::Error(e)) => Frame::Error(e),
            _ => continue,
        };
        let last = matches!(out, Frame::Exit(_) | Frame::Error(_));
        if w.write_all(&out.encode()).await.is_err() {
            break;
        }
        if last {
            break;
        }
    }
    let _ = w.shutdown().await;
    from_client.abort();
}

async fn send_last(w: &mut (impl AsyncWrite + Unpin), f: Frame) {
    let _ = w.write_all(&f.encode()).await;
    let _ = w.shutdown().await;
}
