# Writes industry.csv: shanghai's sample industry dataset (see README.md). Run from examples/.
chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
w = [1,3,9,27,19,26,16,17,20,29,25,13,8,24,10,30,28]
def uscc(f17):
    assert len(f17) == 17, f17
    s = sum(chars.index(c)*w[i] for i,c in enumerate(f17))
    return f17 + chars[(31 - s % 31) % 31]
assert uscc("91310115MA1H7XQ20") == "91310115MA1H7XQ200"
names = ["Lingang Battery Works", "Pudong Cell Technology", "Zhangjiang Power Systems", "Jinqiao Energy Storage",
         "Waigaoqiao Electric", "Fengxian Accumulator", "Qingpu Lithium Materials", "Minhang Motor Drives"]
regions = ["310115", "310120", "310118", "310112"]
out = ["enterprise_uscc,enterprise_name,industry_code,region,period,output_value,employment,capacity"]
for i in range(178):
    code = "C3841" if i < 160 else ("C3842" if i < 172 else "C3819")
    region = regions[i % 4]
    u = uscc("91" + region + f"MA1K{i:05d}")
    name = f"{names[i % len(names)]} {i + 1}"
    for q in ["2026-Q2", "2026-Q3"]:
        out.append(f"{u},{name},{code},{region},{q},{4_000_000 + 150_000 * i},{35 + 2 * i},{8000 + 250 * (i % 9)}")
# the other period forms: a whole year and a month
out.append(f"{uscc('91310115MA1KY0990')},Pudong Grid Components,C3824,310115,2025,61000000,410,52000")
out.append(f"{uscc('91310120MA1KY0991')},Fengxian Cable Works,C3831,310120,2026-07,3900000,52,2100")
open("industry.csv","w").write("\n".join(out) + "\n")
