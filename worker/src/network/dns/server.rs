//! One sandbox's resolver: hickory's `RequestHandler`, carrying the sandbox's task id
//! and reading the node's [`DnsTable`] on every query.
//!
//! Answers, for one question of class IN ([`SandboxNames::lookup`] decides):
//! - known name: its A records (shuffled), or NOERROR with no answer for other types;
//! - known address: its PTR;
//! - unknown, and the sandbox forwards and there are upstreams: the upstream's reply,
//!   record for record (hickory's `ResponseHandler` sends messages, not bytes: the id,
//!   flags, rcode, every section and the EDNS options are the upstream's, the encoding
//!   is ours); REFUSED when too many forwards are in flight, SERVFAIL when no upstream
//!   answered;
//! - unknown otherwise (an internal-only sandbox, or no upstreams): NXDOMAIN, so that
//!   `getaddrinfo` and `nslookup` fail at once instead of retrying as they do after
//!   SERVFAIL or REFUSED;
//! - a sandbox the table does not know (yet): SERVFAIL, which clients retry;
//! - more or fewer than one question: FORMERR; other opcodes: NOTIMP.
//!
//! Over UDP every reply is truncated, with TC set, to the client's EDNS size (512
//! without EDNS); over TCP to 64 KiB.

use std::sync::Arc;

use hickory_net::NetError;
use hickory_net::runtime::Time;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::seq::SliceRandom;
use tracing::debug;

use super::forward::{Failed, Forwarder};
use super::table::{DnsTable, Lookup};

/// The resolver of one sandbox.
#[derive(Debug)]
pub(crate) struct SandboxResolver {
    pub(crate) task_id: Arc<str>,
    pub(crate) table: DnsTable,
    pub(crate) forwarder: Forwarder,
}

#[async_trait::async_trait]
impl RequestHandler for SandboxResolver {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, rh: R) -> ResponseInfo {
        let metrics = crate::metrics::instruments();
        let started = std::time::Instant::now();
        if let Ok(info) = request.request_info() {
            metrics.dns_request(&info.query.original().query_type().to_string());
        }
        let sent = self.answer(request, rh).await;
        metrics.dns_response(rcode_name(sent.response_code));
        metrics.dns_request_duration.observe(started.elapsed().as_secs_f64());
        sent
    }
}

/// A reply code's mnemonic, for the metrics.
fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::FormErr => "FORMERR",
        _ => "other",
    }
}

impl SandboxResolver {
    /// Answers one request: from the sandbox's names, or forwarded upstream.
    async fn answer<R: ResponseHandler>(&self, request: &Request, mut rh: R) -> ResponseInfo {
        let edns = response_edns(request);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        if request.metadata.op_code != OpCode::Query {
            return reply_code(rh, builder, request, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return reply_code(rh, builder, request, ResponseCode::FormErr).await;
        };
        let Some(names) = self.table.get(&self.task_id) else {
            debug!(task = %self.task_id, "no names for this sandbox yet");
            return reply_code(rh, builder, request, ResponseCode::ServFail).await;
        };
        let query = info.query.original();
        let lookup = match query.query_class() {
            DNSClass::IN => names.lookup(&info.query.name().to_string(), query.query_type()),
            _ => Lookup::Unknown,
        };
        let owner = query.name().clone();
        let records: Vec<Record> = match lookup {
            Lookup::A(mut answer) => {
                answer.ips.shuffle(&mut rand::rng());
                answer
                    .ips
                    .into_iter()
                    .map(|ip| Record::from_rdata(owner.clone(), answer.ttl, RData::A(A(ip))))
                    .collect()
            }
            Lookup::Ptr { name, ttl } => match Name::from_ascii(format!("{name}.")) {
                Ok(target) => vec![Record::from_rdata(owner, ttl, RData::PTR(PTR(target)))],
                Err(error) => {
                    debug!(%name, %error, "PTR target is not a domain name; answering empty");
                    Vec::new()
                }
            },
            Lookup::Empty => Vec::new(),
            Lookup::Unknown if names.forward && self.forwarder.enabled() => {
                let tcp = request.protocol() != Protocol::Udp;
                return match self.forwarder.forward(request.as_slice(), request.metadata.id, tcp).await {
                    Ok(reply) => relay(rh, builder, request, &reply).await,
                    Err(Failed::Busy) => reply_code(rh, builder, request, ResponseCode::Refused).await,
                    Err(Failed::NoAnswer) => reply_code(rh, builder, request, ResponseCode::ServFail).await,
                };
            }
            Lookup::Unknown => return reply_code(rh, builder, request, ResponseCode::NXDomain).await,
        };
        let meta = response_meta(request, ResponseCode::NoError);
        sent(rh.send_response(builder.build(meta, records.iter(), [], [], [])).await, meta)
    }
}

/// A reply with no records.
async fn reply_code<R: ResponseHandler>(
    mut rh: R,
    builder: MessageResponseBuilder<'_>,
    request: &Request,
    code: ResponseCode,
) -> ResponseInfo {
    let meta = response_meta(request, code);
    sent(rh.send_response(builder.build_no_records(meta)).await, meta)
}

/// The header of our own replies: the request's id, opcode, RD and CD; RA set.
fn response_meta(request: &Request, code: ResponseCode) -> Metadata {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = true;
    meta.response_code = code;
    meta
}

/// Passes an upstream's reply back: its header and sections, the client's size limit.
async fn relay<R: ResponseHandler>(
    mut rh: R,
    builder: MessageResponseBuilder<'_>,
    request: &Request,
    reply: &Message,
) -> ResponseInfo {
    let meta = reply.metadata;
    // The reply's OPT, if the client sent one, with the client's size as the limit
    // hickory truncates to.
    let edns = match (&request.edns, &reply.edns) {
        (Some(asked), Some(got)) => {
            let mut edns = got.clone();
            edns.set_max_payload(asked.max_payload());
            Some(edns)
        }
        _ => None,
    };
    let mut builder = builder;
    if let Some(edns) = &edns {
        builder.edns(edns);
    }
    let response =
        builder.build(meta, reply.answers.iter(), reply.authorities.iter(), [], reply.additionals.iter());
    // Without an OPT in the reply, the builder still carries the client's, so the
    // limit is the client's either way.
    sent(rh.send_response(response).await, meta)
}

/// The OPT of a reply to `request`: ours, advertising the client's size back (which is
/// what hickory truncates UDP replies to), or none if the client sent none.
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|asked| {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload()).set_version(0).set_dnssec_ok(false);
        edns
    })
}

/// What the server logs about a reply: the sent header, or ours if sending failed.
fn sent(result: Result<ResponseInfo, NetError>, meta: Metadata) -> ResponseInfo {
    result.unwrap_or_else(|error| {
        debug!(%error, "reply not sent");
        Header { metadata: meta, counts: HeaderCounts::default() }.into()
    })
}
