//! The `inventory::submit!` that lets the runtime find the topic at startup.

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::TopicModel;

pub fn expand(model: &TopicModel) -> TokenStream {
    let krate = &model.krate;
    let ident = model.ident;
    quote! {
        #krate::__private::inventory::submit! {
            #krate::__private::TopicRegistration::new(<#ident as #krate::__private::Topic>::SPEC)
        }
    }
}
