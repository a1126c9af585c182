//! The file lifecycle (DESIGN §3) as a pure transition function.
//!
//! `uploading -> processing -> ready | quarantined | failed`, and `deleted` (trash) from any
//! settled state, restorable to the state it was deleted from.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Uploading,
    Processing,
    Ready,
    Quarantined,
    Failed,
    Deleted,
}

impl FileStatus {
    pub const ALL: [FileStatus; 6] = [
        Self::Uploading,
        Self::Processing,
        Self::Ready,
        Self::Quarantined,
        Self::Failed,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Quarantined => "quarantined",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    /// No more pipeline work will happen to a file in this state on its own.
    pub fn is_settled(self) -> bool {
        !matches!(self, Self::Uploading | Self::Processing)
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown file status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for FileStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What happens to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEvent {
    /// The client finished the raw upload and it verified.
    Finalized,
    /// All chunks are stored and indexed.
    Indexed,
    /// The scanner found malware.
    MalwareFound,
    /// Processing gave up (retries exhausted or a permanent error).
    ProcessingFailed,
    /// Moved to trash.
    Deleted,
    /// Restored from trash; carries the state it was deleted from.
    Restored { to: FileStatus },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a file that is {from} cannot be {event}")]
pub struct IllegalTransition {
    pub from: FileStatus,
    pub event: &'static str,
}

impl FileEvent {
    fn verb(self) -> &'static str {
        match self {
            Self::Finalized => "finalized",
            Self::Indexed => "marked ready",
            Self::MalwareFound => "quarantined",
            Self::ProcessingFailed => "marked failed",
            Self::Deleted => "deleted",
            Self::Restored { .. } => "restored",
        }
    }
}

/// The next state, or why the event does not apply. Re-applying an event that already took
/// effect is not an error for the idempotent pipeline events: it returns the same state, so a
/// redelivered message changes nothing.
pub fn transition(from: FileStatus, event: FileEvent) -> Result<FileStatus, IllegalTransition> {
    use FileEvent as E;
    use FileStatus as S;
    let to = match (from, event) {
        (S::Uploading | S::Processing, E::Finalized) => S::Processing,
        (S::Processing | S::Ready, E::Indexed) => S::Ready,
        (S::Processing | S::Quarantined, E::MalwareFound) => S::Quarantined,
        (S::Processing | S::Failed, E::ProcessingFailed) => S::Failed,
        (S::Ready | S::Quarantined | S::Failed | S::Uploading, E::Deleted) => S::Deleted,
        (S::Deleted, E::Restored { to }) if matches!(to, S::Ready | S::Quarantined | S::Failed) => {
            to
        }
        _ => {
            return Err(IllegalTransition {
                from,
                event: event.verb(),
            });
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FileEvent as E;
    use FileStatus as S;

    #[test]
    fn the_happy_path_runs_uploading_processing_ready() {
        let s = transition(S::Uploading, E::Finalized).unwrap();
        assert_eq!(s, S::Processing);
        assert_eq!(transition(s, E::Indexed), Ok(S::Ready));
    }

    #[test]
    fn redelivered_events_are_idempotent() {
        assert_eq!(transition(S::Processing, E::Finalized), Ok(S::Processing));
        assert_eq!(transition(S::Ready, E::Indexed), Ok(S::Ready));
        assert_eq!(
            transition(S::Quarantined, E::MalwareFound),
            Ok(S::Quarantined)
        );
        assert_eq!(transition(S::Failed, E::ProcessingFailed), Ok(S::Failed));
    }

    #[test]
    fn a_quarantined_file_never_becomes_ready() {
        assert!(transition(S::Quarantined, E::Indexed).is_err());
        assert!(transition(S::Quarantined, E::Finalized).is_err());
    }

    #[test]
    fn an_unfinished_upload_cannot_be_indexed_or_quarantined() {
        assert!(transition(S::Uploading, E::Indexed).is_err());
        assert!(transition(S::Uploading, E::MalwareFound).is_err());
    }

    #[test]
    fn ready_files_cannot_be_finalized_again() {
        let err = transition(S::Ready, E::Finalized).unwrap_err();
        assert_eq!(err.to_string(), "a file that is ready cannot be finalized");
    }

    #[test]
    fn trash_restores_to_where_it_was() {
        let d = transition(S::Ready, E::Deleted).unwrap();
        assert_eq!(transition(d, E::Restored { to: S::Ready }), Ok(S::Ready));
        assert!(transition(d, E::Restored { to: S::Processing }).is_err());
        assert!(transition(S::Processing, E::Deleted).is_err());
    }

    #[test]
    fn every_status_parses_back() {
        for s in FileStatus::ALL {
            assert_eq!(s.as_str().parse::<FileStatus>(), Ok(s));
        }
        assert!("bogus".parse::<FileStatus>().is_err());
    }
}
