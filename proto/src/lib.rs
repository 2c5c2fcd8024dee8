//! Shoal's internal gRPC contract, generated from `proto/shoal/*.proto` at build time
//! with protox (no `protoc` needed): Raft and membership between managers
//! ([`raft`]), and worker sessions with the dispatcher ([`dispatcher`]).

#![allow(missing_debug_implementations, unreachable_pub, clippy::doc_markdown)]

/// Raft RPCs between managers, store proposals forwarded to the leader, and joins.
pub mod raft {
    tonic::include_proto!("shoal.raft");
}

/// Worker sessions: registration, heartbeats, assignments, status reports, logs.
pub mod dispatcher {
    tonic::include_proto!("shoal.dispatcher");
}

/// Says how many bytes a payload holds, never what they are, so a logged message
/// (`?msg`) cannot carry a secret.
impl std::fmt::Debug for dispatcher::Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("data", &format_args!("<{} bytes redacted>", self.data.len()))
            .finish()
    }
}

/// The metadata key under which a follower names the leader, on the status it
/// refuses a worker's session with.
pub const LEADER_KEY: &str = "shoal-leader";

/// The encoded `FileDescriptorSet` of every Shoal proto, for reflection and tests.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shoal_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_payload_debugs_without_its_data() {
        let p = dispatcher::Payload {
            kind: "secret".into(),
            id: "s1".into(),
            name: "pw".into(),
            data: b"hunter2".to_vec(),
        };
        let msg = dispatcher::AssignmentChange {
            action: 0,
            item: Some(dispatcher::assignment_change::Item::Payload(p)),
        };
        let shown = format!("{msg:?} {msg:#?}");
        assert!(shown.contains("pw") && shown.contains("<7 bytes redacted>"), "{shown}");
        // Neither the text nor the bytes as Debug prints them for a Vec<u8>.
        assert!(!shown.contains("hunter2") && !shown.contains("104, 117"), "{shown}");
    }

    #[test]
    fn messages_round_trip() {
        let msg = dispatcher::AssignmentsMessage {
            kind: dispatcher::assignments_message::Kind::Incremental as i32,
            applies_to: 7,
            results_in: 8,
            changes: vec![dispatcher::AssignmentChange {
                action: dispatcher::assignment_change::Action::Update as i32,
                item: Some(dispatcher::assignment_change::Item::TaskJson(b"{\"id\":\"t1\"}".to_vec())),
            }],
        };
        let decoded = dispatcher::AssignmentsMessage::decode(msg.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, msg);

        let reply =
            raft::RaftReply { result: Some(raft::raft_reply::Result::Refused("wrong target".into())) };
        assert_eq!(raft::RaftReply::decode(reply.encode_to_vec().as_slice()).unwrap(), reply);
    }

    #[test]
    fn descriptor_set_lists_every_service() {
        let set = prost_types_shim::decode(FILE_DESCRIPTOR_SET);
        for service in ["Raft", "Membership", "Dispatcher"] {
            assert!(set.contains(&service.to_owned()), "{service} missing from {set:?}");
        }
    }

    /// Reads service names out of the descriptor set without another dependency: the
    /// set is a repeated `FileDescriptorProto` (field 1), whose services are field 6,
    /// whose names are field 1.
    mod prost_types_shim {
        use prost::Message;

        #[derive(Clone, PartialEq, Message)]
        struct Set {
            #[prost(message, repeated, tag = "1")]
            file: Vec<File>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct File {
            #[prost(message, repeated, tag = "6")]
            service: Vec<Service>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct Service {
            #[prost(string, tag = "1")]
            name: String,
        }

        pub(super) fn decode(bytes: &[u8]) -> Vec<String> {
            Set::decode(bytes).unwrap().file.into_iter().flat_map(|f| f.service).map(|s| s.name).collect()
        }
    }
}
