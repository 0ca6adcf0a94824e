import { Value } from './ui.jsx';
import { fmtInt, fmtPct, num } from '../lib/format.js';

/** Background and text colours of a rate 0..1 (indigo scale, by its square root; white text on the dark end: WCAG AA both ways). */
export function heat(rate) {
  // A square-root scale: small rates (most cells after period 0) still differ visibly.
  const r = Math.sqrt(Math.max(0, Math.min(1, num(rate) || 0)));
  let light = 97 - r * 67; // 97% → 30%
  // Around 66% neither white nor dark text reaches 4.5:1: step over that band.
  if (light >= 62 && light < 70) light = light < 66 ? 61 : 70;
  return { background: `hsl(239 70% ${light}%)`, color: light < 66 ? '#ffffff' : '#111827' };
}

/** The first day of the period k after a cohort's (YYYY-MM-DD), as a date text. */
function periodStart(cohort, period, k) {
  const [y, m, d] = cohort.slice(0, 10).split('-').map(Number);
  const t = period === 'month' ? new Date(Date.UTC(y, m - 1 + k, 1)) : new Date(Date.UTC(y, m - 1, d + k * (period === 'week' ? 7 : 1)));
  return t.toISOString().slice(0, 10);
}

function todayIn(tz) {
  try {
    return new Intl.DateTimeFormat('en-CA', { timeZone: tz || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
  } catch {
    return new Date().toISOString().slice(0, 10);
  }
}

const PERIOD_NAME = { day: 'Day', week: 'Week', month: 'Month' };

/** The cohort grid of a /retention answer: sizes, and per period the share retained as a heat map. */
export function RetentionGrid({ answer, testid = 'retention' }) {
  const period = answer.period || 'day';
  const n = (answer.periods ?? 0) + 1;
  const today = todayIn(answer.time_zone);
  const hasBreakdown = answer.cohorts.some((c) => c.breakdown !== undefined);
  const future = (c, k) => periodStart(String(c.cohort), period, k) > today;
  // All cohorts: retained / size over the cohorts whose period k has begun.
  const average = Array.from({ length: n }, (_, k) => {
    let size = 0;
    let kept = 0;
    for (const c of answer.cohorts) {
      if (future(c, k)) continue;
      size += num(c.size) || 0;
      kept += num(c.retained[k]) || 0;
    }
    return size ? { rate: kept / size, kept, size } : null;
  });
  const total = answer.cohorts.reduce((s, c) => s + (num(c.size) || 0), 0);
  return (
    <div class="table-scroll">
      <table class="data retention" data-testid={`table-${testid}`}>
        <caption class="sr-only">
          Share of each cohort that came back in each {period} after its first {period}
        </caption>
        <thead>
          <tr>
            <th scope="col">Cohort</th>
            {hasBreakdown ? <th scope="col">Breakdown</th> : null}
            <th scope="col" class="num">
              Users
            </th>
            {Array.from({ length: n }, (_, k) => (
              <th scope="col" class="num" key={k}>
                {PERIOD_NAME[period]} {k}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          <tr class="average" data-testid={`${testid}-average`}>
            <th scope="row">All cohorts</th>
            {hasBreakdown ? <td /> : null}
            <td class="num">
              <Value testid="ret-size" value={total} text={fmtInt(total)} />
            </td>
            {average.map((a, k) => (
              <td key={k} class="num heat" style={a ? heat(a.rate) : undefined} data-testid="ret-cell" data-period={k} data-value={a ? a.rate : ''} data-count={a ? a.kept : ''}>
                {a ? fmtPct(a.rate) : ''}
              </td>
            ))}
          </tr>
          {answer.cohorts.map((c, i) => (
            <tr key={i} data-testid={`row-${testid}`} data-key={`${c.cohort}${hasBreakdown ? `|${c.breakdown ?? ''}` : ''}`}>
              <th scope="row">{String(c.cohort)}</th>
              {hasBreakdown ? <td>{c.breakdown === '' || c.breakdown === null || c.breakdown === undefined ? <span class="muted">(none)</span> : String(c.breakdown)}</td> : null}
              <td class="num">
                <Value testid="ret-size" value={c.size} text={fmtInt(c.size)} />
              </td>
              {Array.from({ length: n }, (_, k) => {
                const later = future(c, k);
                const rate = c.rates[k];
                const kept = c.retained[k];
                return (
                  <td
                    key={k}
                    class={`num heat ${later ? 'later' : ''}`}
                    style={later ? undefined : heat(rate)}
                    data-testid="ret-cell"
                    data-period={k}
                    data-value={rate ?? ''}
                    data-count={kept ?? ''}
                    title={later ? 'This period has not started yet' : `${fmtInt(kept)} of ${fmtInt(c.size)} users`}
                  >
                    {later ? '' : fmtPct(rate)}
                    {later ? null : <span class="sr-only"> ({fmtInt(kept)} users)</span>}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
