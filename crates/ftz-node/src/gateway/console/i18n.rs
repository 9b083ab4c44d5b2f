//! The console's two languages. Every text is one variant of [`T`] with its Chinese and English
//! form side by side, so a text cannot exist in one language only (the match is exhaustive).
//! The language comes from `?lang=`, then the `ftz_lang` cookie the switch sets, then the
//! browser's `Accept-Language`; Chinese when none says otherwise (the zones' staff read Chinese).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Zh,
    En,
}

impl Lang {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language of a request with these headers and, maybe, a `lang` query parameter.
    pub(crate) fn of(headers: &http::HeaderMap, query: Option<&str>) -> Lang {
        let header = |n: http::header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
        let cookie = header(http::header::COOKIE)
            .and_then(|c| c.split(';').filter_map(|p| p.trim().strip_prefix("ftz_lang=")).next());
        Lang::choose(query, cookie, header(http::header::ACCEPT_LANGUAGE))
    }

    /// The language of a request: the query's `lang`, the cookie, the browser's preference.
    pub(crate) fn choose(query: Option<&str>, cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        query
            .and_then(Lang::parse)
            .or_else(|| cookie.and_then(Lang::parse))
            .or_else(|| accept_language.and_then(from_accept_language))
            .unwrap_or(Lang::Zh)
    }
}

/// The preferred of Chinese and English in an `Accept-Language` header (RFC 9110 §12.5.4).
fn from_accept_language(h: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in h.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
        let lang = if tag.starts_with("zh") {
            Lang::Zh
        } else if tag.starts_with("en") {
            Lang::En
        } else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l)
}

macro_rules! texts {
    ($($key:ident => $zh:literal, $en:literal;)*) => {
        /// A text of the console, in either language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum T { $($key),* }

        impl T {
            pub(crate) fn in_(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((T::$key, Lang::Zh) => $zh, (T::$key, Lang::En) => $en,)*
                }
            }
        }
    };
}

texts! {
    Console => "自贸区互认交换控制台", "FTZ exchange console";
    Zone => "本区", "Zone";
    SignedInAs => "当前身份", "Signed in as";
    Verify => "核验", "Verify";
    Lot => "批次检验结果", "Lot results";
    Audit => "审计日志", "Audit log";
    Charts => "统计图", "Charts";
    Witnesses => "见证矩阵", "Witness matrix";
    Equivocations => "分叉证据", "Equivocations";
    CrossCheck => "交叉核对", "Cross-check";
    RegistryHistory => "注册表历史", "Registry history";
    Signers => "计入法定人数的签名机构公钥", "Authority keys counted towards the quorum";
    Admin => "节点管理", "Node admin";
    Install => "安装签名文件", "Install a signed document";
    Issuer => "签发", "Issuer";
    HomeIntro => "选择与您的证书角色相符的页面。其他角色的页面会显示拒绝原因。", "Pick the page for your certificate's role. Pages of other roles show why they are refused.";
    ForEnterprise => "企业：核验资质证书与检验检测结果，导出或核验离线证据包。", "Enterprises: verify certifications and inspection results, export or check an offline bundle.";
    ForAuditor => "审计员：浏览日志、在浏览器中独立验证包含证明、查看见证与统计。", "Auditors: browse the log, check inclusion proofs in the browser, see witnesses and charts.";
    ForAdmin => "管理员：节点状态、对端、注册表、协议、策略、发件箱与隐私预算。", "Admins: node status, peers, registry, agreements, policies, outbox and privacy budgets.";
    ForIssuer => "签发人：签发、撤销、推送检验结果、导入行业数据。", "Issuers: issue, revoke, push inspection results, import industry rows.";
    Refused => "请求被拒绝", "Request refused";
    Reason => "原因代码", "Reason code";
    Detail => "说明", "Detail";
    RefusedHint => "您的证书不允许此操作，或请求有误。原因代码在 docs/reason-codes.md 中有说明。", "Your certificate does not allow this, or the request is wrong. Reason codes are explained in docs/reason-codes.md.";
    CrossSite => "您从其他网站的链接打开了此页。此页会以您的证书身份发起请求，请确认后再打开。", "You followed a link from another site. This page makes requests with your certificate: open it only if you meant to.";
    OpenPage => "打开此页", "Open this page";
    IssuingZone => "签发区", "Issuing zone";
    RecordId => "记录编号", "Record id";
    RecognisingZone => "认可区（留空为本区）", "Recognising zone (empty: this zone)";
    Purpose => "用途", "Purpose";
    Check => "核验", "Check";
    Find => "查询", "Find";
    Verdict => "结论", "Verdict";
    Valid => "有效", "Valid";
    NotValid => "无效", "Not valid";
    Authentic => "真实性（签名）", "Authentic (signature)";
    Current => "时效性（状态）", "Current (status)";
    Recognised => "互认", "Recognised";
    Yes => "是", "yes";
    No => "否", "no";
    Source => "来源", "Source";
    StatusAge => "状态声明时间", "Status stated";
    Agreement => "互认协议", "Agreement";
    DownloadBundle => "下载离线证据包", "Download the offline bundle";
    DropBundle => "核验离线证据包：选择或拖入导出的证据包文件（由本节点离线核验）", "Check an offline bundle: choose or drop an exported bundle file (checked offline by this node)";
    LotId => "批次号", "Lot id";
    NoResults => "没有结果。", "No results.";
    Kind => "类型", "Kind";
    Index => "序号", "Index";
    Time => "时间", "Time";
    Zones => "相关区", "Zones";
    Class => "数据类别", "Data class";
    Decision => "决定", "Decision";
    Summary => "摘要", "Summary";
    From => "起", "From";
    Until => "止", "Until";
    Any => "全部", "any";
    Filter => "筛选", "Filter";
    FirstPage => "第一页", "First page";
    NextPage => "下一页", "Next page";
    PrevPage => "上一页", "Previous page";
    ScopeLabel => "适用范围", "Scope";
    IssuingBody => "发证机构", "Issuing body";
    NoEnd => "长期", "no end";
    CrossVerified => "对方日志验证通过", "the uploaded log verifies";
    CrossNotVerified => "对方日志未通过验证", "the uploaded log does NOT verify";
    InBoth => "双方都记录的传输", "transfers in both logs";
    OnlyHere => "仅本区记录", "only in this log";
    OnlyThere => "仅对方记录", "only in the uploaded log";
    LatestPage => "最新", "Latest";
    LogSize => "日志条目数", "Entries in the log";
    Entry => "日志条目", "Log entry";
    Leaf => "叶子（原始字节）", "Leaf (bytes as hashed)";
    Proof => "包含证明", "Inclusion proof";
    Checkpoint => "检查点", "Checkpoint";
    Keys => "验证公钥", "Verifier keys";
    ProofCheck => "浏览器内独立验证", "Checked in this browser";
    ProofPending => "正在用 WebCrypto 验证……", "Checking with WebCrypto…";
    ProofExplain => "一个独立的脚本在您的浏览器中重新计算叶子哈希、包含证明和检查点的签名与联署（SHA-256、Ed25519），而不是相信节点的结论。它使用的公钥：您在下方固定的公钥（来自签名的联邦注册表），否则为本节点提供的公钥。脚本本身也来自本节点：独立核验请用 ftzctl audit verify-proof。", "A script of its own recomputes the leaf hash, the inclusion proof and the checkpoint's signature and cosignatures (SHA-256, Ed25519) in your browser, rather than taking the node's word. The keys it uses: the ones you pin below (from the signed federation registry), else the ones this node serves. The script too comes from this node: for a check that owes it nothing, use ftzctl audit verify-proof.";
    NoProof => "尚无检查点覆盖此条目。", "No checkpoint covers this entry yet.";
    PinnedKeys => "您信任的验证公钥（每行一个，来自签名的联邦注册表：ftzctl keys show --registry …）。保存在本浏览器中；留空则使用本节点提供的公钥。", "Verifier keys you trust (one per line, from the signed federation registry: ftzctl keys show --registry …). Kept in this browser; empty: the keys this node serves are used.";
    SaveKeys => "保存并重新验证", "Save and check again";
    ChartsIntro => "最近日志条目中的数据传输与拒绝，按时间、区对和原因统计。", "Transfers and refusals among the latest log entries, by time, zone pair and reason.";
    Transfers => "传输", "Transfers";
    Refusals => "拒绝", "Refusals";
    ZonePair => "区对（提供方 → 使用方）", "Zone pair (provider → consumer)";
    Count => "数量", "Count";
    Unacknowledged => "未确认", "unacknowledged";
    RefusalPair => "拒绝方 → 被拒方 · 原因", "refusing zone → refused zone · reason";
    EntriesScanned => "统计的条目", "Entries counted";
    WitnessIntro => "每行一个检查点，每列一个见证者；单元格为联署时间。", "One row per checkpoint, one column per witness; a cell is when it cosigned.";
    Size => "大小", "Size";
    Missing => "缺", "missing";
    NoEquivocations => "本节点作为见证者未发现分叉。", "This node, as a witness, found no equivocation.";
    CrossIntro => "上传另一区导出的日志（ftzctl audit export 生成的目录中的文件），与本区日志逐笔比对。", "Upload another zone's log export (the files of a directory `ftzctl audit export` wrote) to compare it with this zone's log, transfer by transfer.";
    Compare => "比对", "Compare";
    Status => "节点状态", "Node status";
    Peers => "对端节点", "Peers";
    LastPing => "最近一次探测", "Last ping";
    RoundTrip => "往返时延", "Round trip";
    Registry => "联邦注册表", "Federation registry";
    Agreements => "互认协议", "Agreements";
    Policies => "交换策略", "Exchange policies";
    Outbox => "发件箱", "Outbox";
    Budgets => "隐私预算", "Privacy budgets";
    Version => "版本", "Version";
    ValidUntil => "有效期至", "Valid until";
    Revoked => "已撤销", "revoked";
    Attempts => "尝试次数", "Attempts";
    LastError => "最近错误", "Last error";
    Spent => "已用", "Spent";
    Budget => "预算", "Budget";
    Consumer => "使用方", "Consumer";
    DocumentKind => "文件类型", "Document kind";
    File => "文件", "File";
    Submit => "提交", "Submit";
    IssueCertification => "签发资质证书", "Issue a certification";
    Revoke => "撤销记录", "Revoke a record";
    Push => "推送检验结果到他区", "Push an inspection result to a zone";
    ImportRows => "导入行业数据（CSV）", "Import industry rows (CSV)";
    Holder => "持有企业（统一社会信用代码）", "Holder (USCC)";
    HolderName => "企业名称", "Holder name";
    Scheme => "资质类别", "Scheme";
    ToZone => "目标区", "To zone";
    Uptime => "启动时间", "Started";
    Part => "部分", "Part";
    Value => "值", "Value";
    Refresh => "立即探测", "Ping now";
    Decoded => "解码字段", "Decoded fields";
    TimeFormat => "时间均为 UTC", "Times are UTC";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_query_the_cookie_then_the_browser() {
        assert_eq!(Lang::choose(Some("en"), Some("zh"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::choose(None, Some("en"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::choose(None, None, Some("en-US,en;q=0.9,zh;q=0.8")), Lang::En);
        assert_eq!(Lang::choose(None, None, Some("fr-FR, zh-TW;q=0.5, en;q=0.4")), Lang::Zh);
        assert_eq!(Lang::choose(None, None, Some("en;q=0, zh;q=0")), Lang::Zh);
        assert_eq!(Lang::choose(Some("klingon"), None, None), Lang::Zh);
        assert_eq!(T::Verify.in_(Lang::En), "Verify");
        assert_eq!(T::Verify.in_(Lang::Zh), "核验");
    }
}
