//! Section (h): where time goes in one Authorize call, in process.

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let quick = run.quick;
    let policies = run.policies;
    let report = &mut *run.report;
    report.section(
        "(h) Where time goes in one Authorize call, in process (example policies)",
        "| stage | ns/call |",
    );
    {
        use prost::Message;
        let policy = vigil::policy::PolicySet::load(policies)
            .await
            .expect("example policies");
        let request = AuthorizeRequest {
            subject: "alice".into(),
            object: "crm.customers".into(),
            action: "read".into(),
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        let n = if quick { 20_000 } else { 100_000 };
        let time = |f: &mut dyn FnMut()| {
            let started = Instant::now();
            for _ in 0..n {
                f();
            }
            started.elapsed().as_nanos() as f64 / n as f64
        };
        let decode = time(&mut || {
            std::hint::black_box(AuthorizeRequest::decode(bytes.as_slice()).expect("decodes"));
        });
        let attributes = HashMap::new();
        let access = AccessRequest {
            subject: "alice",
            extra_roles: &[],
            object: "crm.customers",
            action: "read",
            domain: "",
            attributes: &attributes,
        };
        let decide = time(&mut || {
            std::hint::black_box(policy.engine.decide(&access).expect("valid").allowed());
        });
        let reason = time(&mut || {
            let verdict = policy.engine.decide(&access).expect("valid");
            std::hint::black_box(verdict.reason(&access));
        }) - decide;
        let mut buf = Vec::with_capacity(512);
        let record_cost = time(&mut || {
            let mut record = Record::new("decision");
            record.id = Some("Xq0-a1B2c3D4e5F6g7H8iA".into());
            record.sub = Some("alice".into());
            record.obj = Some("crm.customers".into());
            record.act = Some("read".into());
            record.allowed = Some(true);
            record.reason = Some(
                "allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst"
                    .into(),
            );
            record.pv = Some(policy.version.clone());
            record.prev = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
            buf.clear();
            std::hint::black_box(vigil::audit::record::encode(&record, &mut buf));
        });
        let response = vigil::proto::AuthorizeResponse {
            allowed: true,
            decision_id: "Xq0-a1B2c3D4e5F6g7H8iA".into(),
            reason: "allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst"
                .into(),
            policy_version: policy.version.clone(),
            audit_seq: 42,
            audit_hash: "00".repeat(32),
            ..Default::default()
        };
        let encode = time(&mut || {
            std::hint::black_box(response.encode_to_vec());
        });
        let keys = vigil::keys::Keyring::generate();
        let support = AccessRequest {
            subject: "bob",
            object: "crm.customers",
            ..access
        };
        let record = customer_record(1);
        let mask_one = time(&mut || {
            let visibility = |label: &vigil::mask::Label| policy.grant(&support, label);
            let mut masker = vigil::mask::Masker::new(
                &policy.classification,
                "crm.customers",
                &keys,
                visibility,
                32,
            );
            let mut copy = record.clone();
            let mut actions = Vec::new();
            masker.mask(0, &mut copy, &mut actions).expect("masks");
            std::hint::black_box(copy);
        });
        // Issue 15's linearity check: one 1 MB string of digit runs and
        // spaces (deterministic), masked whole, best of three.
        let megabyte = {
            let mut text = String::with_capacity(1 << 20);
            let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
            while text.len() < 1_000_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let run = 1 + (state % 12) as usize;
                for i in 0..run {
                    text.push(char::from(b'0' + ((state >> (i * 4)) % 10) as u8));
                }
                text.push(' ');
            }
            crate::Struct {
                fields: vec![("notes".into(), crate::string(&text))],
            }
        };
        let mut megabyte_best = Duration::MAX;
        for _ in 0..3 {
            let visibility = |label: &vigil::mask::Label| policy.grant(&support, label);
            let mut masker = vigil::mask::Masker::new(
                &policy.classification,
                "crm.customers",
                &keys,
                visibility,
                32,
            );
            let mut copy = megabyte.clone();
            let mut actions = Vec::new();
            let started = Instant::now();
            masker.mask(0, &mut copy, &mut actions).expect("masks");
            megabyte_best = megabyte_best.min(started.elapsed());
            std::hint::black_box(copy);
        }
        let grants = time(&mut || {
            for label in policy.classification.labels.values() {
                std::hint::black_box(policy.grant(&support, label));
            }
        });
        report.row(format!("| decode request (prost) | {decode:.0} |"));
        report.row(format!(
            "| decision (compiled engine: {}) | {decide:.0} |",
            policy.engine.is_compiled()
        ));
        report.row(format!("| reason text (rule, role path) | {reason:.0} |"));
        report.row(format!(
            "| audit record: build, JSON, SHA-256 | {record_cost:.0} |"
        ));
        report.row(format!("| encode response (prost) | {encode:.0} |"));
        report.row(format!(
            "| Mask: one 20-field record, support role (whole masker) | {mask_one:.0} |"
        ));
        report.row(format!(
            "| Mask: resolving grants for all {} labels | {grants:.0} |",
            policy.classification.labels.len()
        ));
        report.row(format!(
            "| Mask: one 1 MB string of digit runs and spaces (once, best of 3) | {} |",
            megabyte_best.as_nanos()
        ));
    }
}
