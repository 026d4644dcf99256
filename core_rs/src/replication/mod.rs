//! Replication of the command log across zones with Raft (the `openraft` crate): one Raft
//! group per engine shard, one member per zone.
//!
//! - The Raft log is the journal ([`log_store`]): a log entry is one journal record whose
//!   sequence number is the entry's index + 1 and whose payload is the encoded entry. Every
//!   member fsyncs an entry before it reports it stored, so a committed entry is on the disks
//!   of a majority of zones.
//! - The engine is the state machine ([`state_machine`]); Raft snapshots are engine snapshots.
//! - A normal entry carries a [`Proposal`]: a batch of command records or one configuration
//!   command. Sequence numbers are not in the log: applying entries in log order numbers the
//!   commands, so every replica numbers them alike. Timestamps are stamped by the leader and
//!   clamped on apply so they never go back, even across leaders whose clocks differ.
//! - Zones talk over TCP ([`network`]); [`node`] runs a member: its runtime, its Raft, its
//!   RPC server, and the blocking calls the Python binding makes.
//!
//! Rules it keeps: the state machine is deterministic (the same committed entries give the
//! same state hash on every replica); a client is answered only after its entry is committed
//! and applied; a deposed leader cannot commit (Raft terms fence it).

pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A zone's id in its Raft group. Ids are never reused for a member that starts empty.
pub type ZoneId = u64;

/// What a normal log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// Trading command records (`wire::CommandRecord`, 80 bytes each), applied as one batch.
    Records(bytes::Bytes),
    /// One configuration command as the journal encodes it (`wire::encode_command`).
    Configuration(bytes::Bytes),
    /// A checkpoint: the leader's state digest after applying the entry at `index`. Each
    /// replica compares it with its own at that index; a difference halts that replica loudly.
    Checkpoint { index: u64, state_digest: [u8; 32] },
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proposal::Records(bytes) => write!(f, "Records({} bytes)", bytes.len()),
            Proposal::Configuration(bytes) => write!(f, "Configuration({} bytes)", bytes.len()),
            Proposal::Checkpoint { .. } => write!(f, "Checkpoint"),
        }
    }
}

/// What applying an entry gave: its commands' sequence numbers and events, or why the batch
/// was refused (deterministically, on every replica alike, with nothing applied).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The first command's seq and the last one's; `first_seq > last_seq` when none applied.
    pub first_seq: u64,
    pub last_seq: u64,
    /// `wire::EventRecord`s as bytes.
    pub events: bytes::Bytes,
    pub refused: Option<String>,
}

openraft::declare_raft_types!(
    /// The Raft types of a zone group.
    pub ZoneRaft:
        D = Proposal,
        R = Applied,
        NodeId = ZoneId,
        Node = openraft::BasicNode,
);

pub type Raft = openraft::Raft<ZoneRaft, state_machine::StateMachine>;
pub type Entry = openraft::alias::EntryOf<ZoneRaft>;
pub type LogId = openraft::alias::LogIdOf<ZoneRaft>;
pub type Vote = openraft::alias::VoteOf<ZoneRaft>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<ZoneRaft>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<ZoneRaft>;
