// Strings in Chinese (default) and English; the choice is kept in localStorage.

const KEY = 'qly.lang';

const S = {
  app_name: ['千里眼', 'Qianliyan'],
  app_sub: ['综治视频指挥', 'Command hall'],
  // navigation
  nav_alerts: ['告警', 'Alerts'],
  nav_cameras: ['摄像机', 'Cameras'],
  nav_rates: ['在线率', 'Online rate'],
  nav_rules: ['规则', 'Rules'],
  nav_station: ['派出所', 'Police station'],
  nav_delivery: ['推送', 'Delivery'],
  lang_switch: ['English', '中文'],
  lang_switch_label: ['切换到英文界面', 'Switch to Chinese'],
  logout: ['退出', 'Log out'],
  sound_on: ['声音：开', 'Sound: on'],
  sound_off: ['声音：关', 'Sound: off'],
  feed_live: ['实时', 'Live'],
  feed_connecting: ['连接中…', 'Connecting…'],
  feed_down: ['已断开，重连中', 'Disconnected, retrying'],
  no_auth: ['未启用登录认证（开发模式）', 'Login is not enabled (development mode)'],
  // roles
  role_operator: ['值班员', 'Operator'],
  role_dispatcher: ['派出所民警', 'Dispatcher'],
  role_engineer: ['运维工程师', 'Engineer'],
  role_admin: ['管理员', 'Administrator'],
  // login
  login_title: ['登录', 'Sign in'],
  username: ['用户名', 'Username'],
  password: ['密码', 'Password'],
  login_button: ['登录', 'Sign in'],
  login_failed: ['用户名或密码错误', 'Wrong username or password'],
  too_many: ['尝试次数过多，请 {0} 秒后重试', 'Too many attempts, retry in {0} s'],
  session_expired: ['登录已过期，请重新登录', 'Your session has expired; please sign in again'],
  // common
  all: ['全部', 'All'],
  area: ['区域', 'Area'],
  type: ['类型', 'Type'],
  severity: ['级别', 'Severity'],
  min_severity: ['最低级别', 'Minimum severity'],
  state: ['状态', 'State'],
  time: ['时间', 'Time'],
  camera: ['摄像机', 'Camera'],
  place: ['地点', 'Place'],
  note: ['备注', 'Note'],
  note_ph: ['处置说明（可选）', 'What was done (optional)'],
  close: ['关闭', 'Close'],
  refresh: ['刷新', 'Refresh'],
  loading: ['加载中…', 'Loading…'],
  none: ['暂无', 'None'],
  error: ['错误', 'Error'],
  since: ['持续自', 'Since'],
  ago: ['{0}前', '{0} ago'],
  seconds: ['{0} 秒', '{0} s'],
  minutes: ['{0} 分钟', '{0} min'],
  hours: ['{0} 小时', '{0} h'],
  days: ['{0} 天', '{0} d'],
  no_picture: ['暂无画面', 'No picture'],
  save: ['保存', 'Save'],
  cancel: ['取消', 'Cancel'],
  delete: ['删除', 'Delete'],
  yes: ['是', 'Yes'],
  no: ['否', 'No'],
  // alerts
  alerts_title: ['实时告警', 'Live alerts'],
  alerts_empty: ['当前筛选条件下没有告警', 'No alerts match the filters'],
  alert_detail: ['告警详情', 'Alert details'],
  history: ['处置记录', 'History'],
  score: ['置信度', 'Score'],
  rule: ['规则', 'Rule'],
  message: ['描述', 'Message'],
  jurisdiction: ['辖区派出所', 'Police station'],
  case_id: ['案件编号', 'Case id'],
  escalated: ['已升级', 'Escalated'],
  tracks: ['目标', 'Tracks'],
  location: ['坐标', 'Location'],
  snapshot: ['抓拍图', 'Snapshot'],
  new_alert: ['新告警', 'New alert'],
  unhandled: ['未处理 {0}', '{0} open'],
  ev_created: ['告警产生', 'Raised'],
  ev_transition: ['状态变更', 'State change'],
  ev_escalated: ['超时升级', 'Escalated'],
  ev_case: ['案件系统回执', 'Case system'],
  transition_done: ['{0}：{1}', '{0}: {1}'],
  show_area: ['查看此区域', 'Show this area'],
  // alert states
  st_new: ['待处理', 'New'],
  st_acknowledged: ['已确认', 'Acknowledged'],
  st_dispatched: ['已派警', 'Dispatched'],
  st_accepted: ['已接警', 'Accepted'],
  st_arrived: ['已到场', 'Arrived'],
  st_resolved: ['已办结', 'Resolved'],
  st_false_alarm: ['误报', 'False alarm'],
  // actions (transition targets)
  act_acknowledged: ['确认', 'Acknowledge'],
  act_dispatched: ['派警', 'Dispatch'],
  act_accepted: ['接警', 'Accept'],
  act_arrived: ['到场', 'Arrived'],
  act_resolved: ['办结', 'Resolve'],
  act_false_alarm: ['误报', 'False alarm'],
  // severities
  sev_low: ['低', 'Low'],
  sev_medium: ['中', 'Medium'],
  sev_high: ['高', 'High'],
  sev_critical: ['紧急', 'Critical'],
  // cameras
  cameras_title: ['摄像机墙', 'Camera wall'],
  cam_empty: ['没有符合条件的摄像机', 'No cameras match the filters'],
  cam_history: ['健康记录', 'Health history'],
  cam_fps: ['帧率 入/分析', 'fps in / analysed'],
  cam_stream: ['码流', 'Stream'],
  cam_last_error: ['最近错误', 'Last error'],
  cam_reconnects: ['重连次数', 'Reconnects'],
  cam_tags: ['标签', 'Tags'],
  cam_id: ['编号', 'Id'],
  cam_gb: ['国标编码', 'GB code'],
  cam_history_empty: ['没有状态变化记录', 'No state changes recorded'],
  cs_connecting: ['连接中', 'Connecting'],
  cs_online: ['在线', 'Online'],
  cs_degraded: ['质量异常', 'Degraded'],
  cs_offline: ['离线', 'Offline'],
  cs_disabled: ['已停用', 'Disabled'],
  cs_maintenance: ['维护中', 'Maintenance'],
  // offline reasons
  rs_unreachable: ['网络不可达', 'unreachable'],
  rs_refused: ['连接被拒绝', 'connection refused'],
  rs_auth_failed: ['认证失败', 'authentication failed'],
  rs_not_found: ['码流不存在', 'stream not found'],
  rs_timeout: ['连接超时', 'timed out'],
  rs_stalled: ['视频信号丢失', 'no media (signal lost)'],
  rs_decode_error: ['解码失败', 'decode error'],
  rs_eos: ['码流结束', 'end of stream'],
  // quality faults
  qf_frozen: ['画面冻结', 'frozen picture'],
  qf_dark: ['黑屏/过暗', 'black / too dark'],
  qf_overexposed: ['过曝', 'overexposed'],
  qf_blur: ['模糊', 'blurred'],
  qf_occlusion: ['遮挡', 'occluded'],
  qf_color_cast: ['偏色', 'colour cast'],
  qf_low_fps: ['帧率过低', 'low frame rate'],
  // rates
  rates_title: ['在线率与完好率', 'Online and intact rates'],
  online_rate: ['在线率', 'Online rate'],
  intact_rate: ['完好率', 'Intact rate'],
  online_now: ['当前在线率', 'Online rate now'],
  intact_now: ['当前完好率', 'Intact rate now'],
  target_online: ['考核目标 ≥ 95%', 'Target ≥ 95%'],
  target_intact: ['重点区域目标 ≥ 98%', 'Key areas target ≥ 98%'],
  cnt_enabled: ['应在线', 'Enabled'],
  cnt_online: ['在线', 'Online'],
  cnt_degraded: ['质量异常', 'Degraded'],
  cnt_offline: ['离线', 'Offline'],
  cnt_connecting: ['连接中', 'Connecting'],
  cnt_maintenance: ['维护中', 'Maintenance'],
  cnt_disabled: ['停用', 'Disabled'],
  by_area: ['分区域可用率', 'Availability by area'],
  period: ['统计周期', 'Period'],
  p_24h: ['近 24 小时', 'Last 24 hours'],
  p_7d: ['近 7 天', 'Last 7 days'],
  p_30d: ['近 30 天', 'Last 30 days'],
  availability: ['可用率', 'Availability'],
  daily_chart: ['近 30 天每日可用率', 'Daily availability, last 30 days'],
  export_csv: ['导出月度表', 'Export CSV'],
  export_from: ['起始月份', 'From month'],
  export_to: ['截止月份', 'To month'],
  area_all: ['全县', 'Whole county'],
  area_now_note: ['按所选区域的摄像机当前状态计算', 'Computed from the current state of the cameras in this area'],
  no_data: ['无数据', 'No data'],
  chart_desc: ['每日可用率折线图，虚线为 95% 与 98% 目标线', 'Daily availability line chart; dashed lines are the 95% and 98% targets'],
  // rules editor
  rules_title: ['区域与规则', 'Zones and rules'],
  pick_camera: ['选择摄像机', 'Camera'],
  tool: ['工具', 'Tool'],
  tool_select: ['选择', 'Select'],
  tool_polygon: ['画区域', 'Draw zone'],
  tool_line: ['画绊线', 'Draw tripwire'],
  tool_mask: ['画屏蔽区', 'Draw mask'],
  draw_hint_polygon: ['单击添加顶点，双击（或回车）闭合区域，Esc 取消', 'Click to add points, double-click (or Enter) to close, Esc to cancel'],
  draw_hint_line: ['单击两点画绊线：A 起点，B 终点', 'Click two points: A then B'],
  draw_hint_mask: ['为所选规则画屏蔽区：单击添加顶点，双击闭合', 'Draw a mask for the selected rule: click points, double-click to close'],
  draw_hint_select: ['选择列表中的区域或规则进行编辑', 'Pick a zone or rule in the list to edit it'],
  zones: ['区域', 'Zones'],
  rules: ['规则', 'Rules'],
  zone: ['区域', 'Zone'],
  zone_id: ['区域编号', 'Zone id'],
  zone_name: ['区域名称', 'Zone name'],
  points: ['顶点（x,y；x,y …，0–1）', 'Points (x,y; x,y …, 0–1)'],
  inline_polygon: ['内联多边形', 'Inline polygon'],
  rule_id: ['规则编号', 'Rule id'],
  rule_name: ['规则名称', 'Rule name'],
  kind: ['规则类型', 'Kind'],
  enabled: ['启用', 'Enabled'],
  dispatch: ['推送派出所', 'Dispatch to police'],
  line: ['绊线（x,y；x,y）', 'Line (x,y; x,y)'],
  direction: ['方向', 'Direction'],
  dir_both: ['双向', 'Both'],
  dir_a_to_b: ['A → B', 'A → B'],
  dir_b_to_a: ['B → A', 'B → A'],
  objects: ['目标类别', 'Objects'],
  obj_person: ['行人', 'person'],
  obj_fallen_person: ['倒地人员', 'fallen person'],
  obj_vehicle: ['车辆', 'vehicle'],
  obj_other: ['其他', 'other'],
  cooldown: ['冷却时间', 'Cooldown'],
  rearm: ['复位时间', 'Re-arm'],
  dwell: ['停留时长', 'Dwell'],
  min_count: ['最少人数', 'Min. count'],
  hold: ['持续时长', 'Hold'],
  min_speed: ['最低速度（身高/秒）', 'Min. speed (box heights/s)'],
  samples: ['连续次数', 'Samples'],
  threshold: ['阈值', 'Threshold'],
  min_score: ['最低置信度', 'Min. score'],
  min_area: ['最小目标面积', 'Min. area'],
  max_area: ['最大目标面积', 'Max. area'],
  masks: ['屏蔽区', 'Masks'],
  masks_n: ['{0} 个屏蔽区', '{0} mask(s)'],
  schedule: ['生效时段', 'Schedule'],
  always: ['全天候', 'Always'],
  add_window: ['添加时段', 'Add window'],
  from: ['开始', 'From'],
  to: ['结束', 'To'],
  default_ph: ['默认', 'default'],
  duration_ph: ['如 30s、5m', 'e.g. 30s, 5m'],
  add_rule_for_zone: ['为此区域添加规则', 'Add a rule for this zone'],
  add_rule: ['添加规则', 'Add rule'],
  saved: ['已保存，规则已生效', 'Saved; the rules are in force'],
  save_failed: ['保存失败，请按提示修改', 'Not saved; fix the marked fields'],
  unsaved: ['有未保存的修改', 'Unsaved changes'],
  read_only: ['只读', 'Read only'],
  rules_unavailable: ['规则接口不可用', 'The rules API is not available'],
  other_errors: ['其他错误', 'Other errors'],
  no_zones: ['此摄像机没有区域', 'This camera has no zones'],
  no_rules: ['此摄像机没有规则', 'This camera has no rules'],
  confirm_leave: ['有未保存的修改，确定离开？', 'Leave without saving?'],
  polygon_too_small: ['区域至少需要 3 个顶点', 'A zone needs at least 3 points'],
  bad_points: ['坐标格式应为 x,y；x,y，取值 0–1', 'Write points as x,y; x,y with values 0–1'],
  days_label: ['星期', 'Days'],
  d_mon: ['一', 'Mon'], d_tue: ['二', 'Tue'], d_wed: ['三', 'Wed'], d_thu: ['四', 'Thu'],
  d_fri: ['五', 'Fri'], d_sat: ['六', 'Sat'], d_sun: ['日', 'Sun'],
  // station
  station_title: ['派出所接处警', 'Police station dispatch'],
  station_area: ['本所辖区：{0}', 'Jurisdiction: {0}'],
  station_empty: ['暂无派警任务', 'No dispatched alerts'],
  station_active: ['待处置', 'Open'],
  station_done: ['已办结', 'Closed'],
  // delivery
  delivery_title: ['推送与回执', 'Delivery'],
  outbox_depth: ['待发送', 'Queued'],
  outbox_failing: ['发送失败重试中', 'Failing, retrying'],
  dead_letters: ['死信', 'Dead letters'],
  delivered: ['已送达', 'Delivered'],
  retry: ['重发', 'Retry'],
  retried: ['已重新排队', 'Queued again'],
  sink: ['目标', 'Sink'],
  url: ['地址', 'URL'],
  attempts: ['尝试次数', 'Attempts'],
  next_at: ['下次尝试', 'Next attempt'],
  last_error: ['最近错误', 'Last error'],
  alert_id: ['告警编号', 'Alert id'],
  row_id: ['序号', 'Row'],
  delivered_at: ['送达时间', 'Delivered at'],
  pending: ['待发', 'Pending'],
  // alert type names (shown zh + en together)
  ty_intrusion: ['区域入侵', 'Intrusion'],
  ty_tripwire: ['绊线', 'Tripwire'],
  ty_loitering: ['徘徊', 'Loitering'],
  ty_gathering: ['聚集', 'Gathering'],
  ty_running: ['快速奔跑', 'Running'],
  ty_fighting: ['打架斗殴', 'Fighting'],
  ty_fall: ['跌倒', 'Fall'],
  ty_scene_anomaly: ['场景异常', 'Scene anomaly'],
  ty_video_fault: ['视频故障', 'Video fault'],
  // errors
  err_network: ['网络错误：{0}', 'Network error: {0}'],
  err_forbidden: ['当前账号无权执行此操作', 'Your account may not do this'],
  err_not_found: ['接口不存在：{0}', 'Not found: {0}'],
  err_http: ['请求失败（{0}）', 'Request failed ({0})'],
  err_conflict_states: ['当前状态只能转为：{0}', 'From here the allowed next states are: {0}'],
};

export const ALERT_TYPES = [
  'intrusion', 'tripwire', 'loitering', 'gathering', 'running', 'fighting', 'fall', 'scene_anomaly',
  'video_fault',
];
export const RULE_KINDS = ALERT_TYPES.filter((t) => t !== 'video_fault');
export const SEVERITIES = ['low', 'medium', 'high', 'critical'];
export const ALERT_STATES = ['new', 'acknowledged', 'dispatched', 'accepted', 'arrived', 'resolved', 'false_alarm'];
export const CAMERA_STATES = ['online', 'degraded', 'offline', 'connecting', 'maintenance', 'disabled'];
export const ROLES = ['operator', 'dispatcher', 'engineer', 'admin'];
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

let lang = (() => {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'en' ? 'en' : 'zh';
  } catch {
    return 'zh';
  }
})();

/** The current language, `zh` or `en`. */
export function getLang() {
  return lang;
}

/** Switches the language and remembers it. */
export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh';
  try {
    localStorage.setItem(KEY, lang);
  } catch {
    /* private mode: not remembered */
  }
  document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
}

/** The string `key` in the current language, `{0}`… replaced by `args`. */
export function t(key, ...args) {
  const pair = S[key];
  let s = pair ? pair[lang === 'en' ? 1 : 0] : key;
  args.forEach((a, i) => {
    s = s.replaceAll(`{${i}}`, String(a));
  });
  return s;
}

/** Both languages, `中文 English`, for names operators learn in either (alert types). */
export function both(key) {
  const pair = S[key];
  return pair ? `${pair[0]} ${pair[1]}` : key;
}

/** The alert type's name in both languages. */
export function typeName(type) {
  return both(`ty_${type}`);
}

/** A label with a fallback to the raw value when no string exists. */
export function label(prefix, value) {
  if (value === null || value === undefined || value === '') return '';
  const key = `${prefix}${value}`;
  return S[key] ? t(key) : String(value);
}
