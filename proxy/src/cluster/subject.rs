//! How batches are named in JetStream: one subject per project and agent,
//! `<stream>.batch.<project>.<agent>`, and the message id
//! `<project>/<agent>/<seq>` that makes a batch stored once cluster-wide.
//!
//! Agent names may hold any character; in a subject token, bytes other
//! than ASCII letters, digits, `-` and `_` are written `%XX`, so the token
//! never holds the `.`, `*` and `>` that NATS reads as structure.

use wasmtap_protocol::access_key::ProjectId;

/// The subject of `agent`'s batches in `project`.
pub fn batch(stream: &str, project: &ProjectId, agent: &str) -> String {
    format!("{stream}.batch.{project}.{}", token(agent))
}

/// The subjects of every batch of the stream (its subject filter).
pub fn all_batches(stream: &str) -> String {
    format!("{stream}.batch.>")
}

/// The message id of `agent`'s batch `seq` in `project`.
pub fn message_id(project: &ProjectId, agent: &str, seq: u64) -> String {
    format!("{project}/{agent}/{seq}")
}

/// The project named by a batch subject of `stream`.
pub fn project_of(stream: &str, subject: &str) -> Option<ProjectId> {
    let rest = subject.strip_prefix(stream)?.strip_prefix(".batch.")?;
    let (project, agent) = rest.split_once('.')?;
    (!agent.is_empty() && !agent.contains('.')).then_some(())?;
    ProjectId::new(project).ok()
}

/// `name` as one subject token.
fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> ProjectId {
        ProjectId::new("shop").expect("valid")
    }

    #[test]
    fn agents_become_one_token() {
        assert_eq!(batch("wasmtap", &shop(), "edge-1"), "wasmtap.batch.shop.edge-1");
        assert_eq!(batch("s", &shop(), "a.b *>%"), "s.batch.shop.a%2Eb%20%2A%3E%25");
        assert_eq!(batch("s", &shop(), "é"), "s.batch.shop.%C3%A9");
    }

    #[test]
    fn the_project_reads_back_from_a_subject() {
        let s = batch("wasmtap", &shop(), "web.1");
        assert_eq!(project_of("wasmtap", &s), Some(shop()));
        for bad in [
            "wasmtap.batch.shop",
            "other.batch.shop.a",
            "wasmtap.batch.Shop.a",
            "wasmtap.batch.shop.a.b",
        ] {
            assert_eq!(project_of("wasmtap", bad), None, "{bad}");
        }
    }

    #[test]
    fn message_ids_differ_by_project_agent_and_seq() {
        let a = message_id(&shop(), "edge/1", 7);
        assert_eq!(a, "shop/edge/1/7");
        assert_ne!(a, message_id(&shop(), "edge", 17));
        assert_ne!(a, message_id(&ProjectId::new("shop2").expect("valid"), "edge/1", 7));
    }
}
