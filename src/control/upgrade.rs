//! `POST /upgrade` `{"binary":"/usr/local/bin/procgate"}`: replace procgate's binary, as the
//! Upgrade actor does ([`crate::upgrade::actor`]); a refusal's status says why (400 a bad
//! request, 409 busy, 422 a binary that cannot take over, 502 rolled back).

use super::body::{error, json, read_json, Body};
use super::{Platform, UpgradeRequest};
use crate::upgrade::actor::{Refused, Upgrade};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

pub(super) async fn answer(request: Request<Incoming>, platform: &Platform) -> Response<Body> {
    let UpgradeRequest { binary } = match read_json(request).await {
        Ok(body) => body,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let refused = match platform.upgrades.send(Upgrade { binary }).await {
        Ok(Ok(done)) => return json(StatusCode::OK, &serde_json::json!({ "upgraded": done })),
        Ok(Err(refused)) => refused,
        Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let status = match &refused {
        Refused::Bad(_) => StatusCode::BAD_REQUEST,
        Refused::Busy(_) => StatusCode::CONFLICT,
        Refused::Binary(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refused::RolledBack(_) => StatusCode::BAD_GATEWAY,
    };
    error(status, &refused.to_string())
}
