//! The `#[handler]` attribute of `evhost-sdk`: turns a plain function into
//! the exports of the `evhost:plugin/handler` world. Use it through
//! `evhost_sdk::handler`; misuse is a compile error that says what to write.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, Lit, Meta, ReturnType, Token, Type};

/// Marks the plugin's handler function.
///
/// `#[handler(subject = "orders.order.created")]` (repeat `subject`, or use
/// `subjects = ["a", "b"]`) on either
/// - a typed handler, `fn f(event: T, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError>`
///   with `T: serde::Deserialize` (the payload is decoded as JSON; a payload
///   that does not decode is a permanent error and `f` is not called), or
/// - a raw handler, `fn f(msg: Message, ctx: &Context) -> ...` (or `&Message`).
///
/// The `ctx` parameter may be left out. One handler per plugin crate.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The parsed attribute arguments.
#[derive(Debug, PartialEq)]
struct Args {
    subjects: Vec<String>,
}

fn parse_args(attr: TokenStream2) -> syn::Result<Args> {
    const USAGE: &str = "expected `#[handler(subject = \"orders.order.created\")]` or `#[handler(subjects = [\"a\", \"b\"])]`";
    let metas = syn::parse::Parser::parse2(
        Punctuated::<Meta, Token![,]>::parse_terminated,
        attr.clone(),
    )
    .map_err(|e| syn::Error::new(e.span(), USAGE))?;
    let mut subjects = Vec::new();
    for meta in metas {
        let Meta::NameValue(nv) = &meta else {
            return Err(syn::Error::new(meta.span(), USAGE));
        };
        let key = nv
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "subject" => subjects.push(string_literal(&nv.value)?),
            "subjects" => {
                let Expr::Array(array) = &nv.value else {
                    return Err(syn::Error::new(
                        nv.value.span(),
                        "`subjects` takes a list of strings: `subjects = [\"a\", \"b\"]`",
                    ));
                };
                for element in &array.elems {
                    subjects.push(string_literal(element)?);
                }
            }
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    format!(
                        "unknown argument `{key}`: the handler attribute takes `subject` or `subjects`"
                    ),
                ));
            }
        }
    }
    if subjects.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("the handler needs at least one subject: {USAGE}"),
        ));
    }
    for (subject, bad) in subjects
        .iter()
        .map(|s| (s, s.is_empty() || s.contains(char::is_whitespace)))
    {
        if bad {
            return Err(syn::Error::new(
                attr.span(),
                format!("{subject:?} is not a NATS subject (no spaces, not empty)"),
            ));
        }
    }
    Ok(Args { subjects })
}

fn string_literal(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Ok(s.value()),
            other => Err(syn::Error::new(
                other.span(),
                "a subject must be a string literal, like \"orders.>\"",
            )),
        },
        other => Err(syn::Error::new(
            other.span(),
            "a subject must be a string literal, like \"orders.>\"",
        )),
    }
}

/// How the function takes its message.
#[derive(Debug, PartialEq)]
enum Form {
    /// `fn f(event: T, ..)`: decode the payload as `T`.
    Typed { type_name: String },
    /// `fn f(msg: Message, ..)`.
    RawOwned,
    /// `fn f(msg: &Message, ..)`.
    RawRef,
}

/// What the expansion needs to know about the function.
#[derive(Debug, PartialEq)]
struct Signature {
    form: Form,
    takes_context: bool,
}

fn is_message(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Message"))
}

fn check_signature(func: &ItemFn) -> syn::Result<Signature> {
    let sig = &func.sig;
    const SHAPE: &str = "a handler looks like `fn name(event: T, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError>`";
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new(
            a.span(),
            "a handler cannot be `async`: evhost calls it synchronously",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a handler cannot be generic",
        ));
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!("the handler must return a Result: {SHAPE}"),
        ));
    }
    let mut typed = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "a handler is a free function, without `self`",
                ));
            }
            FnArg::Typed(t) => typed.push(t),
        }
    }
    if typed.is_empty() || typed.len() > 2 {
        return Err(syn::Error::new(
            sig.inputs
                .span()
                .join(sig.ident.span())
                .unwrap_or(sig.ident.span()),
            format!("a handler takes one or two parameters: {SHAPE}"),
        ));
    }
    let form = match &*typed[0].ty {
        Type::Reference(r) if is_message(&r.elem) => Form::RawRef,
        ty if is_message(ty) => Form::RawOwned,
        Type::Reference(r) => {
            return Err(syn::Error::new(
                r.span(),
                "the event parameter takes the decoded value by value (`event: T`), not a reference",
            ));
        }
        Type::Path(p) => Form::Typed {
            type_name: p
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
        },
        other => Form::Typed {
            type_name: quote!(#other).to_string(),
        },
    };
    let takes_context = match typed.get(1) {
        None => false,
        Some(t) => match &*t.ty {
            Type::Reference(r) if r.mutability.is_none() => true,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "the second parameter must be `ctx: &Context`",
                ));
            }
        },
    };
    Ok(Signature {
        form,
        takes_context,
    })
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = parse_args(attr)?;
    let func: ItemFn = syn::parse2(item)
        .map_err(|e| syn::Error::new(e.span(), "#[handler] goes on a function"))?;
    let sig = check_signature(&func)?;
    let name = &func.sig.ident;
    let subjects = &args.subjects;
    let ctx_arg = if sig.takes_context {
        quote!(, ctx)
    } else {
        quote!()
    };
    let call = match &sig.form {
        Form::Typed { type_name } => {
            let ty = match &func.sig.inputs[0] {
                FnArg::Typed(t) => &t.ty,
                FnArg::Receiver(_) => unreachable!("checked above"),
            };
            quote_spanned! {ty.span()=>
                ::evhost_sdk::__private::typed::<#ty>(msg, #type_name, |event, ctx| {
                    let _ = &ctx;
                    #name(event #ctx_arg)
                })
            }
        }
        // The context copies the message's metadata: made only when asked for.
        Form::RawOwned if sig.takes_context => quote! {
            ::evhost_sdk::__private::raw_with_context(msg, |msg, ctx| #name(msg, ctx))
        },
        Form::RawRef if sig.takes_context => quote! {
            ::evhost_sdk::__private::raw_with_context(msg, |msg, ctx| #name(&msg, ctx))
        },
        Form::RawOwned => quote! {
            ::evhost_sdk::__private::raw(msg, |msg| #name(msg))
        },
        Form::RawRef => quote! {
            ::evhost_sdk::__private::raw(msg, |msg| #name(&msg))
        },
    };
    Ok(quote! {
        #func

        #[doc(hidden)]
        struct __EvhostHandler;

        impl ::evhost_sdk::__private::Guest for __EvhostHandler {
            fn subscriptions() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![#(::std::string::String::from(#subjects)),*]
            }

            fn handle(msg: ::evhost_sdk::__private::WitMessage) -> ::evhost_sdk::__private::WitResult {
                #call
            }
        }

        ::evhost_sdk::bindings::__export_handler!(__EvhostHandler);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn err(attr: TokenStream2, item: TokenStream2) -> String {
        expand(attr, item).unwrap_err().to_string()
    }

    #[test]
    fn subjects_parse_singly_repeated_and_as_a_list() {
        assert_eq!(
            parse_args(quote!(subject = "a.b")).unwrap().subjects,
            ["a.b"]
        );
        assert_eq!(
            parse_args(quote!(subject = "a", subject = "b"))
                .unwrap()
                .subjects,
            ["a", "b"]
        );
        assert_eq!(
            parse_args(quote!(subjects = ["a.>", "b.*"]))
                .unwrap()
                .subjects,
            ["a.>", "b.*"]
        );
    }

    #[test]
    fn bad_arguments_say_what_to_write() {
        assert!(
            parse_args(quote!())
                .unwrap_err()
                .to_string()
                .contains("at least one subject")
        );
        assert!(
            parse_args(quote!(topic = "a"))
                .unwrap_err()
                .to_string()
                .contains("unknown argument `topic`")
        );
        assert!(
            parse_args(quote!(subject = 3))
                .unwrap_err()
                .to_string()
                .contains("string literal")
        );
        assert!(
            parse_args(quote!(subject = "a b"))
                .unwrap_err()
                .to_string()
                .contains("not a NATS subject")
        );
        assert!(
            parse_args(quote!(subjects = "a"))
                .unwrap_err()
                .to_string()
                .contains("list of strings")
        );
        assert!(
            parse_args(quote!("a"))
                .unwrap_err()
                .to_string()
                .contains("expected")
        );
    }

    #[test]
    fn signatures_are_classified() {
        let f: ItemFn = syn::parse2(quote!(
            fn f(o: Order, ctx: &Context) -> R {
                todo()
            }
        ))
        .unwrap();
        assert_eq!(
            check_signature(&f).unwrap(),
            Signature {
                form: Form::Typed {
                    type_name: "Order".into()
                },
                takes_context: true
            }
        );
        let f: ItemFn = syn::parse2(quote!(
            fn f(m: evhost_sdk::Message) -> R {
                todo()
            }
        ))
        .unwrap();
        assert_eq!(
            check_signature(&f).unwrap(),
            Signature {
                form: Form::RawOwned,
                takes_context: false
            }
        );
        let f: ItemFn = syn::parse2(quote!(
            fn f(m: &Message, c: &Context) -> R {
                todo()
            }
        ))
        .unwrap();
        assert_eq!(
            check_signature(&f).unwrap(),
            Signature {
                form: Form::RawRef,
                takes_context: true
            }
        );
    }

    #[test]
    fn misuse_is_a_clear_error() {
        let a = quote!(subject = "a");
        assert!(
            err(
                a.clone(),
                quote!(
                    async fn f(o: Order) -> R {
                        x
                    }
                )
            )
            .contains("cannot be `async`")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f<T>(o: T) -> R {
                        x
                    }
                )
            )
            .contains("cannot be generic")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f(o: Order) {
                        x
                    }
                )
            )
            .contains("must return a Result")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f() -> R {
                        x
                    }
                )
            )
            .contains("one or two parameters")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f(a: A, b: &B, c: C) -> R {
                        x
                    }
                )
            )
            .contains("one or two parameters")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f(o: &Order) -> R {
                        x
                    }
                )
            )
            .contains("by value")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f(o: Order, c: Context) -> R {
                        x
                    }
                )
            )
            .contains("ctx: &Context")
        );
        assert!(
            err(
                a.clone(),
                quote!(
                    fn f(&self, o: Order) -> R {
                        x
                    }
                )
            )
            .contains("without `self`")
        );
        assert!(
            err(
                a,
                quote!(
                    struct S;
                )
            )
            .contains("goes on a function")
        );
    }

    #[test]
    fn expansion_exports_subscriptions_and_handle() {
        let out = expand(
            quote!(subject = "orders.order.created"),
            quote!(
                fn on(o: Order) -> R {
                    x
                }
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("fn subscriptions"));
        assert!(out.contains("\"orders.order.created\""));
        assert!(out.contains("__export_handler"));
        assert!(out.contains("typed :: < Order >"));
    }
}
