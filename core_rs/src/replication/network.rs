//! Raft's messages between zones, over TCP.
//!
//! A connection carries one request at a time: a frame (u32 LE length, then the postcard
//! encoding of a [`Request`]) answered by a frame holding a [`Response`]. A client connects
//! lazily, sets `TCP_NODELAY` (a heartbeat must not wait for Nagle), and drops the connection
//! after any error or timeout so the next call starts clean; a refused or failed connect is
//! `Unreachable` (Raft backs off), anything later is a `Network` error (Raft retries).
//! Errors of the remote Raft travel as text: the caller only needs to know the call failed.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::Snapshot;
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::state_machine::ZoneSnapshot;
use super::{Raft, SnapshotMeta, Vote, ZoneId, ZoneRaft};

/// Largest frame accepted: a snapshot of a full engine fits; a length above it is garbage.
pub const FRAME_BYTES_MAX: usize = 1 << 30;
/// A snapshot transfer may take this long at least, whatever Raft's RPC budget.
const SNAPSHOT_TIMEOUT_MIN: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<ZoneRaft>),
    Vote(VoteRequest<ZoneRaft>),
    PreVote(VoteRequest<ZoneRaft>),
    Snapshot { vote: Vote, meta: SnapshotMeta, data: Vec<u8> },
    TransferLeader(TransferLeaderRequest<ZoneRaft>),
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<ZoneRaft>, String>),
    Vote(Result<VoteResponse<ZoneRaft>, String>),
    Snapshot(Result<SnapshotResponse<ZoneRaft>, String>),
    TransferLeader(Result<TransferLeaderResponse<ZoneRaft>, String>),
}

async fn write_frame<T: Serialize>(writer: &mut BufWriter<OwnedWriteHalf>, value: &T) -> io::Result<()> {
    let body = postcard::to_stdvec(value).map_err(io::Error::other)?;
    writer.write_all(&(body.len() as u32).to_le_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts.
async fn read_frame<T: DeserializeOwned>(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<Option<T>> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(io::Error::other(format!("frame of {length} bytes exceeds {FRAME_BYTES_MAX}")));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    postcard::from_bytes(&body).map(Some).map_err(io::Error::other)
}

/// Makes a [`PeerClient`] per target zone; connects nothing until the first call.
#[derive(Clone, Debug, Default)]
pub struct NetworkFactory {
    /// Addresses to dial instead of the ones the group records (a fault-injecting proxy).
    dial: BTreeMap<ZoneId, String>,
}

impl NetworkFactory {
    pub fn new(dial: BTreeMap<ZoneId, String>) -> NetworkFactory {
        NetworkFactory { dial }
    }
}

impl RaftNetworkFactory<ZoneRaft> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: ZoneId, node: &BasicNode) -> PeerClient {
        let addr = self.dial.get(&target).unwrap_or(&node.addr).clone();
        PeerClient { target, addr, connection: None }
    }
}

#[derive(Debug)]
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
}

/// Raft's client of one other zone.
#[derive(Debug)]
pub struct PeerClient {
    target: ZoneId,
    addr: String,
    connection: Option<Connection>,
}

impl PeerClient {
    async fn call(&mut self, request: &Request, timeout: Duration) -> Result<Response, RPCError<ZoneRaft>> {
        let outcome = tokio::time::timeout(timeout, self.exchange(request)).await;
        let error = match outcome {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(error)) => error,
            Err(_) => RPCError::Network(NetworkError::from_string(format!(
                "zone {} ({}) did not answer within {timeout:?}",
                self.target, self.addr
            ))),
        };
        self.connection = None;
        Err(error)
    }

    async fn exchange(&mut self, request: &Request) -> Result<Response, RPCError<ZoneRaft>> {
        if self.connection.is_none() {
            let stream =
                TcpStream::connect(&self.addr).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            stream.set_nodelay(true).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            let (read, write) = stream.into_split();
            self.connection = Some(Connection { reader: BufReader::new(read), writer: BufWriter::new(write) });
        }
        let connection = self.connection.as_mut().expect("connected above");
        let network = |e: io::Error| RPCError::Network(NetworkError::new(&e));
        write_frame(&mut connection.writer, request).await.map_err(network)?;
        match read_frame(&mut connection.reader).await.map_err(network)? {
            Some(response) => Ok(response),
            None => {
                Err(RPCError::Network(NetworkError::from_string(format!("zone {} closed the connection", self.target))))
            }
        }
    }
}

fn remote<T>(result: Result<T, String>) -> Result<T, RPCError<ZoneRaft>> {
    result.map_err(|message| RPCError::Unreachable(Unreachable::from_string(message)))
}

fn mismatched() -> RPCError<ZoneRaft> {
    RPCError::Network(NetworkError::from_string("a response of another kind than the request"))
}

impl RaftNetworkV2<ZoneRaft> for PeerClient {
    type SnapshotData = super::state_machine::SnapshotData;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<ZoneRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<ZoneRaft>, RPCError<ZoneRaft>> {
        match self.call(&Request::Append(request), option.soft_ttl()).await? {
            Response::Append(result) => remote(result),
            _ => Err(mismatched()),
        }
    }

    async fn vote(
        &mut self,
        request: VoteRequest<ZoneRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<ZoneRaft>, RPCError<ZoneRaft>> {
        match self.call(&Request::Vote(request), option.soft_ttl()).await? {
            Response::Vote(result) => remote(result),
            _ => Err(mismatched()),
        }
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<ZoneRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<ZoneRaft>, RPCError<ZoneRaft>> {
        match self.call(&Request::PreVote(request), option.soft_ttl()).await? {
            Response::Vote(result) => remote(result),
            _ => Err(mismatched()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: ZoneSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<ZoneRaft>, StreamingError<ZoneRaft>> {
        let request = Request::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot.into_inner() };
        let timeout = option.hard_ttl().max(SNAPSHOT_TIMEOUT_MIN);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            response = self.call(&request, timeout) => match response {
                Ok(Response::Snapshot(Ok(response))) => Ok(response),
                Ok(Response::Snapshot(Err(message))) => Err(StreamingError::Unreachable(Unreachable::from_string(message))),
                Ok(_) => Err(StreamingError::Network(NetworkError::from_string("a response of another kind"))),
                Err(RPCError::Unreachable(e)) => Err(StreamingError::Unreachable(e)),
                Err(RPCError::Network(e)) => Err(StreamingError::Network(e)),
                Err(other) => Err(StreamingError::Network(NetworkError::from_string(other.to_string()))),
            },
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<ZoneRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<ZoneRaft>, RPCError<ZoneRaft>> {
        match self.call(&Request::TransferLeader(request), option.soft_ttl()).await? {
            Response::TransferLeader(result) => remote(result),
            _ => Err(mismatched()),
        }
    }
}

/// Accepts zones' connections and hands their requests to `raft`, until the task is dropped.
pub async fn serve(listener: TcpListener, raft: Raft) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, raft.clone()));
    }
}

async fn serve_connection(stream: TcpStream, raft: Raft) {
    let (read, write) = stream.into_split();
    let (mut reader, mut writer) = (BufReader::new(read), BufWriter::new(write));
    // A broken or garbled connection is simply closed: the peer reconnects.
    while let Ok(Some(request)) = read_frame::<Request>(&mut reader).await {
        let response = answer(&raft, request).await;
        if write_frame(&mut writer, &response).await.is_err() {
            return;
        }
    }
}

async fn answer(raft: &Raft, request: Request) -> Response {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match request {
        Request::Append(request) => Response::Append(raft.append_entries(request).await.map_err(|e| text(&e))),
        Request::Vote(request) => Response::Vote(raft.vote(request).await.map_err(|e| text(&e))),
        Request::PreVote(request) => Response::Vote(raft.pre_vote(request).await.map_err(|e| text(&e))),
        Request::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot { meta, snapshot: io::Cursor::new(data) };
            Response::Snapshot(raft.install_full_snapshot(vote, snapshot).await.map_err(|e| text(&e)))
        }
        Request::TransferLeader(request) => {
            Response::TransferLeader(raft.handle_transfer_leader(request).await.map_err(|e| text(&e)))
        }
    }
}
