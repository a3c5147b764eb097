//! The audit trail for administrators: export (filtered, redacted as
//! configured) and verification of the chain. Both are admitted and audited
//! as admin calls; the work runs on a blocking thread, a few exports at a
//! time.

use super::{AppError, Caller, Core};
use crate::{
    audit::{
        export::{for_each, ExportFilter},
        record::CheckedLine,
        verify::{verify_dir, Anchor, VerifyError, VerifyReport},
        Redactor,
    },
    listen::Plane,
};

/// What an export asks for; empty fields filter nothing.
#[derive(Debug, Clone, Default)]
pub struct ExportCall {
    pub since: String,
    pub until: String,
    pub subject: String,
    /// `true`, `false` or empty.
    pub allowed: String,
    pub from_seq: u64,
}

/// An admitted export, holding one of the few export places until it is
/// run or dropped.
pub struct Export {
    dir: std::path::PathBuf,
    filter: ExportFilter,
    redactor: Redactor,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Export {
    /// Reads the log (blocking: run it on a blocking thread), handing each
    /// matching record to `each` until it refuses one.
    pub fn run(
        self,
        each: impl FnMut(&[u8], &CheckedLine) -> Result<(), String>,
    ) -> Result<(), AppError> {
        for_each(&self.dir, &self.filter, &self.redactor, each).map_err(AppError::BrokenLog)
    }
}

impl Core {
    /// ExportAudit: admitted, the filter read, a place taken (Busy past
    /// [`super::MAX_CONCURRENT_EXPORTS`]).
    pub async fn export_audit(
        &self,
        caller: &Caller<'_>,
        plane: Plane,
        call: ExportCall,
    ) -> Result<Export, AppError> {
        self.admit_admin(caller, "ExportAudit", plane).await?;
        let filter = ExportFilter::parse(
            Some(&call.since),
            Some(&call.until),
            Some(call.subject),
            Some(&call.allowed),
            Some(call.from_seq),
        )
        .map_err(AppError::BadField)?;
        let place = self
            .exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| AppError::Busy("audit exports"))?;
        Ok(Export {
            dir: self.audit_dir.clone(),
            filter,
            redactor: self.redactor.clone(),
            _place: place,
        })
    }

    /// VerifyAudit: admitted, then the whole chain (and `anchor`, a
    /// receipt to hold it to, if given) verified. A log that does not
    /// verify is an answer, not a refusal.
    pub async fn verify_audit(
        &self,
        caller: &Caller<'_>,
        plane: Plane,
        anchor: &str,
    ) -> Result<Result<VerifyReport, VerifyError>, AppError> {
        self.admit_admin(caller, "VerifyAudit", plane).await?;
        let anchors = if anchor.is_empty() {
            Vec::new()
        } else {
            vec![anchor.parse::<Anchor>().map_err(AppError::BadField)?]
        };
        let dir = self.audit_dir.clone();
        tokio::task::spawn_blocking(move || verify_dir(&dir, &anchors, None))
            .await
            .map_err(|e| AppError::Internal(format!("verification task failed: {e}")))
    }
}
