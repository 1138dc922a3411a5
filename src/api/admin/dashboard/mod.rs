//! `GET /dashboard`: the live page, with its script, style sheet and icon.
//!
//! The files sit beside this module and are compiled into the binary (`include_str!`), so
//! the page needs no CDN, no npm and no build step. They hold no data: the page itself
//! fetches `/metrics` and `/admin/v1/groups` (which do need the admin token), so these four
//! routes are served without the token. Each answer carries a strict Content-Security-Policy
//! that lets the page load and fetch only from this listener, and `Cache-Control: no-cache`
//! so an upgraded bigpipe never pairs a new page with an old script.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

/// The page: only `'self'` may supply scripts, styles, images and fetches; no inline
/// script or style, no framing, no forms, no `<base>`.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its URL path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file the page is made of.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/dashboard",
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("app.js"),
    },
    Asset {
        path: "/dashboard/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("app.css"),
    },
    Asset {
        path: "/dashboard/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("icon.svg"),
    },
];

/// Registers the dashboard's routes (GET only; other methods fall to the admin default).
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        cfg.service(web::resource(asset.path).route(web::get().to(move || serve(asset))));
    }
}

async fn serve(asset: &'static Asset) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::App;
    use actix_web::test as web_test;

    #[actix_web::test]
    async fn every_asset_is_served_with_its_type_and_the_policy() {
        let app = web_test::init_service(App::new().configure(routes)).await;
        for asset in ASSETS {
            let resp =
                web_test::call_service(&app, web_test::TestRequest::get().uri(asset.path).to_request()).await;
            assert_eq!(resp.status(), 200, "{}", asset.path);
            let h = resp.headers();
            assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), asset.content_type);
            assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-cache");
            assert_eq!(
                h.get(header::CONTENT_SECURITY_POLICY).unwrap(),
                CONTENT_SECURITY_POLICY
            );
            let body = web_test::read_body(resp).await;
            assert_eq!(body, asset.body.as_bytes());
        }
    }

    #[test]
    fn the_page_names_only_its_own_assets_and_nothing_inline() {
        let page = ASSETS[0].body;
        for asset in &ASSETS[1..] {
            assert!(
                page.contains(&format!("\"{}\"", asset.path)),
                "{} not linked",
                asset.path
            );
        }
        // The policy forbids inline code and styles: the page must not need them.
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("style="), "inline style");
        assert!(!page.contains("<style"), "inline style sheet");
        // No outside URL (the SVG namespace is a name, not a fetch).
        for asset in &ASSETS[..3] {
            let text = asset.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}",
                asset.path
            );
        }
    }
}
