//! A 405 in the envelope on every route of a listener.
//!
//! actix answers a method a resource has no route for with an empty 405 (plus `Allow`),
//! outside the `{"data","errno","msg"}` envelope every other answer has. This layer rewrites
//! those empty 405s as the envelope (`方法不允许`, errno -1), keeping `Allow`; a route
//! added later gets the same answer without doing anything. 405s that already have a body
//! (`/rpc/call`'s own) pass unchanged.

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::ResponseError;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};

use super::envelope::CallError;

/// Decides, before the 405, whether the request is refused for another reason: the admin
/// listener answers 401 without its token, so a path's methods cannot be probed either.
pub type Refusal = fn(&HttpRequest) -> Option<HttpResponse>;

/// The layer, for `App::wrap`; `refusal` may answer instead of the 405.
pub fn layer<B: MessageBody + 'static>(refusal: Refusal) -> ErrorHandlers<B> {
    ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, move |res| {
        Ok(in_envelope(res, refusal))
    })
}

fn in_envelope<B: MessageBody>(res: ServiceResponse<B>, refusal: Refusal) -> ErrorHandlerResponse<B> {
    if !matches!(res.response().body().size(), BodySize::None | BodySize::Sized(0)) {
        return ErrorHandlerResponse::Response(res.map_into_left_body());
    }
    let allow = res.headers().get(header::ALLOW).cloned();
    let (req, _) = res.into_parts();
    let response = refusal(&req).unwrap_or_else(|| {
        let mut response = CallError::Method.error_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    });
    ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body())
}

/// No other refusal: the public listener.
pub fn none(_: &HttpRequest) -> Option<HttpResponse> {
    None
}

#[cfg(test)]
mod tests {
    use actix_web::test as actix_test;
    use actix_web::{App, web};

    use super::*;

    #[actix_web::test]
    async fn a_method_a_route_lacks_gets_the_envelope_with_allow_and_call_keeps_its_own() {
        let app = actix_test::init_service(App::new().wrap(layer(none)).configure(crate::api::routes)).await;
        let req = actix_test::TestRequest::put().uri("/healthz").to_request();
        let res = actix_test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "GET");
        let body = actix_test::read_body(res).await;
        assert_eq!(
            &body[..],
            r#"{"data":"","errno":-1,"msg":"方法不允许"}"#.as_bytes()
        );

        let req = actix_test::TestRequest::get().uri("/rpc/call").to_request();
        let res = actix_test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "POST");
        let body = actix_test::read_body(res).await;
        assert_eq!(
            &body[..],
            r#"{"data":"","errno":-1,"msg":"方法不允许"}"#.as_bytes()
        );
    }

    #[actix_web::test]
    async fn a_refusal_answers_before_the_405() {
        fn locked(_: &HttpRequest) -> Option<HttpResponse> {
            Some(CallError::Unauthorized.error_response())
        }
        let app = actix_test::init_service(
            App::new()
                .wrap(layer(locked))
                .service(web::resource("/x").route(web::get().to(HttpResponse::Ok))),
        )
        .await;
        let req = actix_test::TestRequest::post().uri("/x").to_request();
        let res = actix_test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let req = actix_test::TestRequest::get().uri("/x").to_request();
        assert_eq!(actix_test::call_service(&app, req).await.status(), StatusCode::OK);
    }
}
