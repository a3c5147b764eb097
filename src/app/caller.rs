//! Who is calling, as every front door can say it: the credentials the
//! call carried, the connection it came on, and its trace context. The
//! adapters build one from their protocol's headers; nothing of gRPC or
//! HTTP is left in it.

use crate::{
    authn::Credentials,
    listen::{Connection, Peer},
    telemetry,
};

/// A call's caller, borrowed from the request for the call's life.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The `authorization` metadata or header.
    authorization: Option<&'a str>,
    /// The connection the call came on (its peer, its client certificate),
    /// as the listener recorded it.
    connection: Option<&'a Connection>,
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
    /// Set only by the gateway check, when the gateway that asks may name
    /// the end subject (`Authenticator::gateway_names_subject`): no
    /// adapter and no caller can set it.
    vouched_by_gateway: bool,
}

impl<'a> Caller<'a> {
    /// A caller read from its request: `header` looks up a (lowercase)
    /// header or metadata name.
    pub fn new(
        connection: Option<&'a Connection>,
        header: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Caller<'a> {
        Caller {
            authorization: header("authorization"),
            connection,
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            vouched_by_gateway: false,
        }
    }

    /// The same caller, speaking for an end subject its gateway names.
    pub(super) fn vouched(self) -> Caller<'a> {
        Caller {
            vouched_by_gateway: true,
            ..self
        }
    }

    pub fn connection(&self) -> Option<&'a Connection> {
        self.connection
    }

    pub fn peer(&self) -> Option<Peer> {
        self.connection.map(|connection| connection.peer)
    }

    pub(super) fn credentials(&self) -> Credentials<'a> {
        Credentials {
            authorization: self.authorization,
            client_certificate: self
                .connection
                .and_then(|connection| connection.client_certificate.as_deref()),
            vouched_by_gateway: self.vouched_by_gateway,
        }
    }
}

impl telemetry::Headers for Caller<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        match name {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }
}
