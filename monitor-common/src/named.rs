//! `named!`: a fieldless enum whose variants carry a stable number and a
//! stable snake_case name on one line (kunai's `StrEnum`, the C X-macro).
//!
//! The generated type has `ALL`, `name`, `from_name`, `from_u32` and
//! `Display`; with the `serde` feature it (de)serializes as its name, so trace
//! files and metric labels keep the spelling the table gives.

/// A type whose values are spelled by stable names (see [`named!`]).
pub trait Named: Copy + Sized + 'static {
    /// What a value is, for error messages (`"hook"`, `"event kind"`).
    const WHAT: &'static str;
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

macro_rules! named {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $id:literal => $str:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $id, )*
        }

        impl $name {
            /// Every value, in table order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Every name, in table order.
            pub const NAMES: &'static [&'static str] = &[$($str),*];

            /// The stable name (trace files, JSON, metric labels).
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $str,)*
                }
            }

            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($str => Some($name::$variant),)*
                    _ => None,
                }
            }

            pub const fn from_u32(v: u32) -> Option<$name> {
                match v {
                    $($id => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        $crate::named::named_impls!($name, $what);
    };
}

pub(crate) use named;

/// The trait, `Display` and serde impls of a [`Named`] type whose inherent
/// `name`/`from_name` exist.
macro_rules! named_impls {
    ($name:ident, $what:literal) => {
        impl $crate::named::Named for $name {
            const WHAT: &'static str = $what;
            fn name(self) -> &'static str {
                $name::name(self)
            }
            fn from_name(name: &str) -> Option<Self> {
                $name::from_name(name)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::named::NameVisitor::<$name>::new())
            }
        }
    };
}

pub(crate) use named_impls;

/// Deserializes a [`Named`] value from its name.
#[cfg(feature = "serde")]
pub struct NameVisitor<T>(core::marker::PhantomData<T>);

#[cfg(feature = "serde")]
impl<T> NameVisitor<T> {
    pub const fn new() -> Self {
        NameVisitor(core::marker::PhantomData)
    }
}

#[cfg(feature = "serde")]
impl<T> Default for NameVisitor<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "serde")]
impl<T: Named> serde::de::Visitor<'_> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "a {} name", T::WHAT)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        T::from_name(v).ok_or_else(|| E::custom(format_args!("unknown {} {v:?}", T::WHAT)))
    }
}
