//! Calling vigil from a Rust service.
//!
//! ```sh
//! cargo run --release -- serve &          # vigil on the example policies
//! cargo run --example client -- alice crm.customers read
//! ```

use vigil::proto::{access_control_client::AccessControlClient, AuthorizeRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (subject, object, action) = match (args.next(), args.next(), args.next()) {
        (Some(s), Some(o), Some(a)) => (s, o, a),
        _ => {
            eprintln!("usage: client SUBJECT OBJECT ACTION [ADDR]");
            std::process::exit(2);
        }
    };
    let addr = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());

    let mut client = AccessControlClient::connect(addr).await?;
    let request = AuthorizeRequest {
        subject,
        object,
        action,
        ..Default::default()
    };
    // In jwt mode, attach the caller's token:
    // request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let answer = client.authorize(request).await?.into_inner();
    println!(
        "{}: {} (decision {}, audit record {})",
        if answer.allowed { "allow" } else { "deny" },
        answer.reason,
        answer.decision_id,
        answer.audit_seq
    );
    Ok(())
}
